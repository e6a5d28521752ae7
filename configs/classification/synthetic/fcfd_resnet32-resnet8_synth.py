# FCFD on the generated data, CPU-sized: resnet32 -> resnet8, as fcfd_*_cifar100.py
# (T = 4, 2 sampled mixed paths, separate BN statistics for mixed paths), with the L2
# weight the authors use for the pair of the same family and widths (16/32/64), R56 -> R20:
# 0.02 (their default 5 makes the L2 term ~10x the CE here), and the L2 ramp scaled to the
# short schedule (2 of 20 epochs).
_base_ = ['./resnet8_synth.py']

teacher_ckpt = 'work_dirs/resnet32_synth/epoch_30.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmkd::classification/synthetic/resnet32_synth.py',
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
                l2_warmup_epochs=2,
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
