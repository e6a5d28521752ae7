# KD (Hinton et al. 2015) on CIFAR-100, resnet56 -> resnet20, as the KD baseline of the
# CRD / mdistiller / KD++ tables: 0.1 * CE + 0.9 * KL(p_t || p_s) * T^2 with T = 4
# (batchmean KL). Teacher: train configs/classification/cifar100/resnet56_cifar100.py
# first.
_base_ = ['./resnet20_cifar100.py']

teacher_ckpt = 'work_dirs/resnet56_cifar100/epoch_240.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student=dict(
        type='ImageClassifier',
        backbone=dict(type='CIFARResNet', arch='resnet20'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=100,
            in_channels=64,
            loss=dict(type='CrossEntropyLoss', loss_weight=0.1),  # CE weight 0.1
            topk=(1, 5))),
    teacher='mmkd::classification/cifar100/resnet56_cifar100.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        kd=dict(
            loss=dict(type='KDLoss', temperature=4.0, loss_weight=0.9),
            inputs=dict(student_logits='student.logits',
                        teacher_logits='teacher.logits'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
