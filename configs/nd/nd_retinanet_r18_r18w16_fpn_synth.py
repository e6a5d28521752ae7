# ND / KD++ on RetinaNet, CPU-sized: RetinaNet R18 teacher -> R18 (width 16) student on
# the generated data. The ND paper has no dense-detector version: this mapping is mmkd's
# own extension (DenseNDLoss). Samples are the positive anchors (the student head's own
# assigner, `dense.labels`); each takes the 64-d output of the last cls-tower conv (after
# ReLU; the tower has two convs here) at its location, on P2-P5, and is pulled towards the teacher's mean of that class
# (4 rows, foreground only), weight 1.0. Plus sigmoid KD on the class logits (as the KD
# baseline for RetinaNet: T = 1, weight = num_classes = 4).
#
# Two steps: the class means first (frozen teacher over the training set), then training:
#   python tools/class_means.py configs/nd/nd_retinanet_r18_r18w16_fpn_synth.py
#     (writes class_means below; --out PATH to write elsewhere)
#   python tools/train.py configs/nd/nd_retinanet_r18_r18w16_fpn_synth.py
_base_ = ['../synthetic/retinanet_r18w16_fpn_student_synth.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/retinanet_r18_fpn_teacher_synth/iter_1200.pth'
class_means = 'work_dirs/nd_retinanet_r18_r18w16_fpn_synth/class_means.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::synthetic/retinanet_r18_fpn_teacher_synth.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        nd=dict(
            loss=dict(
                type='DenseNDLoss',
                class_means=class_means,
                num_classes=4,  # foreground classes only
                in_channels=64,
                loss_weight=1.0),
            inputs=dict(
                student_feats='student.bbox_head.cls_convs.1',
                teacher_feats='teacher.bbox_head.cls_convs.1',
                anchor_labels='dense.labels')),
        dense_kd=dict(
            loss=dict(type='KDLoss', temperature=1.0, mode='sigmoid', loss_weight=4.0),
            inputs=dict(
                student_logits='student.dense.cls_score',
                teacher_logits='teacher.dense.cls_score'),
            levels=(0, 1, 2, 3))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
