# KD on the generated data, CPU-sized: resnet32 (teacher, resnet32_synth.py) -> resnet8,
# as the CIFAR KD baseline (kd_*_cifar100.py): 0.1 * CE + 0.9 * KL(p_t || p_s) * T^2, T = 4.
_base_ = ['./resnet8_synth.py']

teacher_ckpt = 'work_dirs/resnet32_synth/epoch_30.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student=dict(
        type='ImageClassifier',
        backbone=dict(type='CIFARResNet', arch='resnet8'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=100,
            in_channels=64,
            loss=dict(type='CrossEntropyLoss', loss_weight=0.1),
            topk=(1, 5))),
    teacher='mmkd::classification/synthetic/resnet32_synth.py',
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
