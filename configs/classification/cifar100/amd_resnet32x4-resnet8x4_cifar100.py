# AMD (Jeon et al., Neurocomputing 2023) on CIFAR-100, resnet32x4 -> resnet8x4: CE +
# global + local AMD (0.8 * whole map + 0.2 * mean of the 4 quadrants) between the
# student's and the teacher's attention maps of the three stage outputs (32x32, 16x16,
# 8x8; the widths match, (64, 128, 256), and AMD compares attention maps, so no
# connector). The paper leaves the layers and the weight to the user; ours: level weight =
# 0.1 * (H * W)^2. AMD is a per-position mean of squared differences of unit vectors over
# the map, ~1 / (HW)^2 in size; with (HW)^2 the three stages contribute alike (measured at
# init: AMD * (HW)^2 = 5.3-5.7 on every stage for resnet56/resnet20, 1.9-3.0 for
# resnet32x4/resnet8x4), and 0.1 puts the whole term at ~0.7-1.7 at the start, below the
# CE (4.6). No logit KD.
_base_ = ['./resnet8x4_cifar100.py']

teacher_ckpt = 'work_dirs/resnet32x4_cifar100/epoch_240.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmkd::classification/cifar100/resnet32x4_cifar100.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        amd=dict(
            loss=dict(type='AMDLoss', local_weight=0.2, loss_weight=0.1),
            inputs=dict(student_feat='student.stages', teacher_feat='teacher.stages'),
            levels=(0, 1, 2),  # layer1 32x32, layer2 16x16, layer3 8x8
            level_weights=((32 * 32)**2, (16 * 16)**2, (8 * 8)**2))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
