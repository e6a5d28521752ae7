# ND / KD++ (Wang et al., ECCV 2024), CPU-sized: Faster R-CNN R18 teacher -> R18 (width 16)
# student on the generated data. On the student's sampled RoIs (both RoI heads run on
# them): ND between the 256-d RoI classifier inputs (fc7) and the teacher's class means
# (4 classes + background = 5 rows), weight 1.0, plus RoI-logit KD (T = 1, weight 1.0).
#
# Two steps: the class means first (frozen teacher over the training set), then training:
#   python tools/class_means.py configs/nd/nd_faster_rcnn_r18_r18w16_fpn_synth.py
#     (writes class_means below; --out PATH to write elsewhere)
#   python tools/train.py configs/nd/nd_faster_rcnn_r18_r18w16_fpn_synth.py
_base_ = ['../synthetic/faster_rcnn_r18w16_fpn_student_synth.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/faster_rcnn_r18_fpn_teacher_synth/iter_1200.pth'
class_means = 'work_dirs/nd_faster_rcnn_r18_r18w16_fpn_synth/class_means.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::synthetic/faster_rcnn_r18_fpn_teacher_synth.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        nd=dict(
            loss=dict(
                type='NDLoss',
                class_means=class_means,
                num_classes=5,  # 4 classes + background (mmdet RoI label 4)
                in_channels=256,
                loss_weight=1.0),
            inputs=dict(
                student_emb='student.roi.embedding',
                teacher_emb='teacher.roi.embedding',
                labels='roi.labels')),
        roi_kd=dict(
            loss=dict(type='KDLoss', temperature=1.0, loss_weight=1.0),
            inputs=dict(
                student_logits='student.roi.cls_score',
                teacher_logits='teacher.roi.cls_score'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
