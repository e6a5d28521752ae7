# FCFD (Liu et al., ICLR 2023), CPU-sized: Faster R-CNN R18 teacher -> R18 (width 16)
# student on the generated data. Bridges B_s->t / B_t->s (3x3 conv + BN, 64 -> 64 ch) per
# FPN level; appearance MSE on the 5 levels P2-P6; on the student's sampled RoIs, softmax
# KL (T = 1) + box-delta MSE of the student head (s), of the frozen teacher head on the
# bridged student features (st) and of the student head on the bridged teacher features
# (ts), all weights 1. The bridges are dropped when the student is exported.
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
        fcfd=dict(
            loss=dict(
                type='FCFDRoILoss',
                in_channels=64,
                num_levels=5,
                num_roi_levels=4,
                temperature=1.0,
                app_weight=1.0,
                kl_weight=1.0,
                reg_weight=1.0),
            inputs=dict(
                student_feats='student.neck',
                teacher_feats='teacher.neck',
                rois='roi.rois',
                student_cls='student.roi.cls_score',
                student_reg='student.roi.bbox_pred',
                teacher_cls='teacher.roi.cls_score',
                teacher_reg='teacher.roi.bbox_pred',
                student_roi_forward='student.roi_forward',
                teacher_roi_forward='teacher.roi_forward'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
