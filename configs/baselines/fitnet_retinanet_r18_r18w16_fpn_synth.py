# FitNet / L2 baseline, CPU-sized: RetinaNet R18 teacher -> R18 (width 16) student on the
# generated data; MSE between the student's and the teacher's FPN levels P3-P5, weight 1
# per level. Not P6/P7: their anchors (128-406 px) are larger than any object of these
# 128 px images (8-60 px), so they only carry background, and the teacher's P6/P7 values
# are large (the extra convs on C5 are not normalised): with them, the MSE started at 8730
# against 50 for P3-P5, clipped gradients were all L2, and the student ended at 0.8 AP,
# below the student alone (4.4; demo, seed 0, 400 iterations, 2026-12-04).
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
        fpn_l2=dict(
            loss=dict(type='FeatureMSELoss', loss_weight=1.0),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck'),
            levels=(0, 1, 2))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
