# PKD baseline (Cao et al., NeurIPS 2022), CPU-sized: RetinaNet R18 teacher -> R18 (width
# 16) student on the generated data. On the four FPN levels P2-P5 (MMRazor uses four), each feature map
# is normalised per channel (zero mean, unit std over batch and positions) and half the MSE
# of the normalised maps is the loss (PKDLoss), weight 10 per level as MMRazor's RetinaNet
# configs. No connector: both FPNs have 64 channels.
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
        fpn_pkd=dict(
            loss=dict(type='PKDLoss', loss_weight=10.0),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck'),
            levels=(0, 1, 2, 3))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
