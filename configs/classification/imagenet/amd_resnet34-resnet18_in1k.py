# AMD (Jeon et al., Neurocomputing 2023) on ImageNet-1k, ResNet-34 -> ResNet-18: CE +
# global + local AMD (0.8 / 0.2) on the four stage outputs (56x56, 28x28, 14x14, 7x7 at
# 224 px; widths 64-512 match). Level weight = 0.1 * (H * W)^2, as the CIFAR configs
# (AMD ~ 1 / (HW)^2; these weights assume 224 px training crops). No published ImageNet
# AMD setting: untested at full size.
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

# mmpretrain model zoo: ResNet-34, 73.62 top-1 (configs/resnet/metafile.yml)
teacher_ckpt = ('https://download.openmmlab.com/mmclassification/v0/resnet/'
                'resnet34_8xb32_in1k_20210831-f257d4e6.pth')
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmpretrain::resnet/resnet34_8xb32_in1k.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        amd=dict(
            loss=dict(type='AMDLoss', local_weight=0.2, loss_weight=0.1),
            inputs=dict(student_feat='student.stages', teacher_feat='teacher.stages'),
            levels=(0, 1, 2, 3),
            level_weights=((56 * 56)**2, (28 * 28)**2, (14 * 14)**2, (7 * 7)**2))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
