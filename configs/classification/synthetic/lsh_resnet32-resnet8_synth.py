# LSHFM (LSHL2_s) on the generated data, CPU-sized: resnet32 -> resnet8, the CIFAR setting
# (lsh_*_cifar100.py): CE + 6 * (MSE + LSH) on the 64-d penultimate features over the
# samples the teacher classifies correctly, N = 32 * 64 = 2048 hashes, sigma = std of the
# teacher's fc weight, median bias from one teacher pass over the training set.
_base_ = ['./resnet8_synth.py']

teacher_ckpt = 'work_dirs/resnet32_synth/epoch_30.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmkd::classification/synthetic/resnet32_synth.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        lsh=dict(
            loss=dict(
                type='LSHLoss',
                in_channels=64,
                num_hashes=2048,
                sigma='head.fc.weight',
                with_l2=True,
                correct_only=True,
                loss_weight=6.0),
            inputs=dict(student_feat='student.embedding', teacher_feat='teacher.embedding',
                        teacher_logits='teacher.logits', labels='labels'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='LSHBiasInitHook', mode='median', max_batches=None),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
