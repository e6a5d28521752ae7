# KD++ (ND: Wang et al., ECCV 2024) on ImageNet-1k, ResNet-34 -> ResNet-18 (the paper:
# 71.98 top-1): CE + 2.5 * min(1, epoch / 5) * KL(p_t || p_s) (T = 1) + 1.0 * ND on the
# 512-d embeddings against the teacher's class means.
#
# Two steps: the class means first, then training:
#   python tools/class_means.py configs/classification/imagenet/nd_resnet34-resnet18_in1k.py
#   python tools/train.py configs/classification/imagenet/nd_resnet34-resnet18_in1k.py
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

# mmpretrain model zoo: ResNet-34, 73.62 top-1 (configs/resnet/metafile.yml)
teacher_ckpt = ('https://download.openmmlab.com/mmclassification/v0/resnet/'
                'resnet34_8xb32_in1k_20210831-f257d4e6.pth')
class_means = 'work_dirs/nd_resnet34-resnet18_in1k/class_means.pth'
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher='mmpretrain::resnet/resnet34_8xb32_in1k.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        nd=dict(
            loss=dict(type='NDLoss', class_means=class_means, num_classes=1000,
                      in_channels=512, loss_weight=1.0),
            inputs=dict(student_emb='student.embedding', teacher_emb='teacher.embedding',
                        labels='labels')),
        kd=dict(
            loss=dict(type='KDLoss', temperature=1.0, loss_weight=2.5),
            inputs=dict(student_logits='student.logits',
                        teacher_logits='teacher.logits'),
            schedule=dict(warmup_epochs=5))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
