# KD++ (ND: Wang et al., ECCV 2024) on CIFAR-100, resnet32x4 -> resnet8x4: CE + 3.5 *
# min(1, epoch / 20) * KL_T(p_t || p_s) * T^2 (T = 4) + 2.0 * ND, where ND pulls the
# student's 256-d embedding towards the direction of the teacher's class mean (and its
# norm up to the teacher's).
#
# Two steps: the teacher's class means first (frozen teacher over the training set), then
# training:
#   python tools/class_means.py configs/classification/cifar100/nd_resnet32x4-resnet8x4_cifar100.py
#   python tools/train.py configs/classification/cifar100/nd_resnet32x4-resnet8x4_cifar100.py
_base_ = ['./resnet8x4_cifar100.py']

teacher_ckpt = 'work_dirs/resnet32x4_cifar100/epoch_240.pth'
class_means = 'work_dirs/nd_resnet32x4-resnet8x4_cifar100/class_means.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmkd::classification/cifar100/resnet32x4_cifar100.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        nd=dict(
            loss=dict(type='NDLoss', class_means=class_means, num_classes=100,
                      in_channels=256, loss_weight=2.0),
            inputs=dict(student_emb='student.embedding', teacher_emb='teacher.embedding',
                        labels='labels')),
        kd=dict(
            loss=dict(type='KDLoss', temperature=4.0, loss_weight=3.5),
            inputs=dict(student_logits='student.logits',
                        teacher_logits='teacher.logits'),
            schedule=dict(warmup_epochs=20))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
