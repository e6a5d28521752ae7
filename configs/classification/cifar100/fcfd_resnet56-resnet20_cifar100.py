# FCFD (Liu et al., ICLR 2023) on CIFAR-100, resnet56 -> resnet20, as the authors' CIFAR
# code: CE + KL_T(p_t || p_s) + sum over 2 sampled mixed paths of KL_T(p_t || p_mixed) (T
# = 4) + 0.02 * min(1, (epoch + 1) / 20) * L2, where mixed paths switch once between the
# networks after layer1 or layer2 (student -> bridge -> teacher, or teacher -> bridge ->
# student), the bridges are conv3x3 + BN + LeakyReLU(0.1) per stage and direction, and L2
# compares every teacher-space feature (bridged student stages, teacher stages of
# student-to-teacher paths; plus their GAP(ReLU) at the last stage) with the teacher's.
# Mixed paths keep their own BN running statistics in the student stages.
_base_ = ['./resnet20_cifar100.py']

teacher_ckpt = 'work_dirs/resnet56_cifar100/epoch_240.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmkd::classification/cifar100/resnet56_cifar100.py',
    teacher_ckpt=teacher_ckpt,
    # the authors' teacher BatchNorm: batch statistics, running statistics left unchanged
    teacher_bn='train',
    distill_losses=dict(
        fcfd=dict(
            loss=dict(
                type='FCFDClsLoss',
                student_channels=(16, 32, 64),
                teacher_channels=(16, 32, 64),
                temperature=4.0,
                l2_weight=0.02,
                l2_warmup_epochs=20,
                num_mixed_paths=2),
            inputs=dict(
                student_feats='student.stages', teacher_feats='teacher.stages',
                student_logits='student.logits', teacher_logits='teacher.logits',
                student_net='student.staged', teacher_net='teacher.staged',
                progress='progress'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
