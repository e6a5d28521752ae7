# KD (Hinton et al. 2015) on ImageNet-1k, ResNet-34 -> ResNet-18, as mdistiller's KD
# baseline: 0.5 * CE + 0.5 * KL(p_t || p_s) * T^2 with T = 1. mmpretrain's ResNet-18
# recipe otherwise (8 x 32 images, SGD lr 0.1, 100 epochs, lr x0.1 at 30/60/90).
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

# mmpretrain model zoo: ResNet-34, 73.62 top-1 (configs/resnet/metafile.yml)
teacher_ckpt = ('https://download.openmmlab.com/mmclassification/v0/resnet/'
                'resnet34_8xb32_in1k_20210831-f257d4e6.pth')
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student=dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(3, ),
                      style='pytorch'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=1000,
            in_channels=512,
            loss=dict(type='CrossEntropyLoss', loss_weight=0.5),  # CE weight 0.5
            topk=(1, 5))),
    teacher='mmpretrain::resnet/resnet34_8xb32_in1k.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        kd=dict(
            loss=dict(type='KDLoss', temperature=1.0, loss_weight=0.5),
            inputs=dict(student_logits='student.logits',
                        teacher_logits='teacher.logits'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
