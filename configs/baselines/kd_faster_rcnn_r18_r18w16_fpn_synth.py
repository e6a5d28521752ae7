# KD baseline, CPU-sized: Faster R-CNN R18 teacher -> R18 (width 16) student on the
# generated data; KL between RoI class distributions (T = 1) on the student's sampled RoIs.
_base_ = ['../synthetic/faster_rcnn_r18w16_fpn_student_synth.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/faster_rcnn_r18_fpn_teacher_synth/iter_1200.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::synthetic/faster_rcnn_r18_fpn_teacher_synth.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
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
