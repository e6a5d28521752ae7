# LSHFM (Wang, Ge, Wu, TPAMI 2022) on CIFAR-100, resnet32x4 -> resnet8x4: the paper's
# CIFAR method LSHL2_s = CE + beta * (MSE + LSH) on the penultimate features (the 256-d
# input of the classifier), averaged per sample over the samples the teacher classifies
# correctly; beta = 6, N = 32 * D = 8192 frozen hash functions, W ~ N(0, sigma^2) with
# sigma = std of the teacher's fc weight, bias b = -median over the training set of W f_t
# (one pass of the teacher before training, LSHBiasInitHook). No logit KD.
_base_ = ['./resnet8x4_cifar100.py']

teacher_ckpt = 'work_dirs/resnet32x4_cifar100/epoch_240.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmkd::classification/cifar100/resnet32x4_cifar100.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        lsh=dict(
            loss=dict(
                type='LSHLoss',
                in_channels=256,
                num_hashes=8192,
                sigma='head.fc.weight',
                with_l2=True,
                correct_only=True,
                loss_weight=6.0),
            inputs=dict(student_feat='student.embedding', teacher_feat='teacher.embedding',
                        teacher_logits='teacher.logits', labels='labels'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='LSHBiasInitHook', mode='median', max_batches=None),  # whole training set
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
