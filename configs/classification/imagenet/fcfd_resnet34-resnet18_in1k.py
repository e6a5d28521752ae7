# FCFD (Liu et al., ICLR 2023) on ImageNet-1k, ResNet-34 -> ResNet-18, as the authors'
# ImageNet setting: CE + KL(p_t || p_s) + KL of 2 sampled mixed paths (T = 1) +
# 0.02 * min(1, (epoch + 1) / 5) * L2 (the authors' IN/main.py ramps the L2 term over 5
# epochs, 20 on CIFAR); mixed paths switch once after layer1, 2 or 3 (6 candidates),
# bridges conv3x3 + BN + LeakyReLU(0.1).
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
    # the authors' teacher BatchNorm: batch statistics, running statistics left unchanged
    teacher_bn='train',
    distill_losses=dict(
        fcfd=dict(
            loss=dict(
                type='FCFDClsLoss',
                student_channels=(64, 128, 256, 512),
                teacher_channels=(64, 128, 256, 512),
                temperature=1.0,
                l2_weight=0.02,
                l2_warmup_epochs=5,
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
