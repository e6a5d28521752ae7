# FCFD on RetinaNet (mmkd's extension of Liu et al., ICLR 2023, to a dense head),
# CPU-sized: RetinaNet R18 teacher -> R18 (width 16) student on the generated data.
# Bridges B_s->t / B_t->s (3x3 conv + BN, 64 -> 64 ch) on each of the 4 FPN levels P2-P5;
# appearance MSE on all of them (as the FitNet config; with the earlier P3-P7 FPN it was
# P3-P5 only, app_levels, since the teacher's large P6/P7 values made every clipped
# gradient the appearance term); for the student head (s), the frozen teacher head on the
# bridged student features (st) and the student head on the bridged teacher features
# (ts): binary (sigmoid) KL per anchor x class (T = 1, weight num_classes = 4: a sum over
# classes, as in the KD baseline) + MSE of the anchors' deltas (weight 1), on every
# location (no mask). The bridges are dropped when the student is exported.
_base_ = ['../synthetic/retinanet_r18w16_fpn_student_synth.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/retinanet_r18_fpn_teacher_synth/iter_1200.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::synthetic/retinanet_r18_fpn_teacher_synth.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        fcfd=dict(
            loss=dict(
                type='FCFDDenseLoss',
                in_channels=64,
                num_levels=4,
                temperature=1.0,
                app_weight=1.0,
                kl_weight=4.0,
                reg_weight=1.0),
            inputs=dict(
                student_feats='student.neck',
                teacher_feats='teacher.neck',
                student_cls='student.dense.cls_score',
                student_reg='student.dense.bbox_pred',
                teacher_cls='teacher.dense.cls_score',
                teacher_reg='teacher.dense.bbox_pred',
                student_dense_forward='student.dense_forward',
                teacher_dense_forward='teacher.dense_forward'))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
