# KD baseline, CPU-sized: RetinaNet R18 teacher -> R18 (width 16) student on the generated
# data; sigmoid (binary) KD (T = 1) on every anchor x class logit of the dense head, levels
# P2-P5, weight num_classes = 4 (a sum over classes, a mean over anchors; see README).
# The same term as the KD half of KD++ (configs/nd/nd_retinanet_r18_r18w16_fpn_synth.py),
# so the two differ by ND alone.
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
