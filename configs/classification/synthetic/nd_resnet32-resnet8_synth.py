# KD++ (ND) on the generated data, CPU-sized: resnet32 -> resnet8, the CIFAR R56 -> R20
# weights (nd_resnet56-resnet20_cifar100.py): CE + 1.0 * ramp * KL_T (T = 4) + 2.0 * ND,
# with the KD warm-up scaled to the short schedule (20/240 of training: 2 of 20 epochs).
#   python tools/class_means.py configs/classification/synthetic/nd_resnet32-resnet8_synth.py
#   python tools/train.py configs/classification/synthetic/nd_resnet32-resnet8_synth.py
_base_ = ['./resnet8_synth.py']

teacher_ckpt = 'work_dirs/resnet32_synth/epoch_30.pth'
class_means = 'work_dirs/nd_resnet32-resnet8_synth/class_means.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmkd::classification/synthetic/resnet32_synth.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        nd=dict(
            loss=dict(type='NDLoss', class_means=class_means, num_classes=100,
                      in_channels=64, loss_weight=2.0),
            inputs=dict(student_emb='student.embedding', teacher_emb='teacher.embedding',
                        labels='labels')),
        kd=dict(
            loss=dict(type='KDLoss', temperature=4.0, loss_weight=1.0),
            inputs=dict(student_logits='student.logits',
                        teacher_logits='teacher.logits'),
            schedule=dict(warmup_epochs=2))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
