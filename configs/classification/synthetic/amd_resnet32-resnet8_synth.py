# AMD on the generated data, CPU-sized: resnet32 -> resnet8, as amd_*_cifar100.py:
# CE + global + local AMD on the three stage outputs (32x32, 16x16, 8x8), level weight
# 0.1 * (H * W)^2 (measured at init: AMD * (HW)^2 = 5.4-7.6 per stage for this pair).
_base_ = ['./resnet8_synth.py']

teacher_ckpt = 'work_dirs/resnet32_synth/epoch_30.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmkd::classification/synthetic/resnet32_synth.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        amd=dict(
            loss=dict(type='AMDLoss', local_weight=0.2, loss_weight=0.1),
            inputs=dict(student_feat='student.stages', teacher_feat='teacher.stages'),
            levels=(0, 1, 2),
            level_weights=((32 * 32)**2, (16 * 16)**2, (8 * 8)**2))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
