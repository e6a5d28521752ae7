# LSHFM (Wang, Ge, Wu, TPAMI 2022) on ImageNet-1k, ResNet-34 -> ResNet-18 (the paper:
# 71.72 top-1): LSHL2_s = CE + beta * (MSE + LSH) on the 512-d penultimate features,
# averaged per sample over the samples the teacher classifies correctly; beta = 5,
# N = 2048 frozen hash functions, sigma = std of the teacher's fc weight, bias 0. No
# logit KD.
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
    distill_losses=dict(
        lsh=dict(
            loss=dict(
                type='LSHLoss',
                in_channels=512,
                num_hashes=2048,
                sigma='head.fc.weight',
                bias=0.0,
                with_l2=True,
                correct_only=True,
                loss_weight=5.0),
            inputs=dict(student_feat='student.embedding', teacher_feat='teacher.embedding',
                        teacher_logits='teacher.logits', labels='labels'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
