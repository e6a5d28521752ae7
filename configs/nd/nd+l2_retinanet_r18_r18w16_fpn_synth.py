# L2 + ND, CPU-sized RetinaNet (R18 teacher -> R18 width-16 student, generated data).
# mmkd's own combination, not the paper's: the ND paper adds ND to logit KD (KD++, the
# nd_*.py configs) or to other feature methods (ReviewKD++), never to FitNet. Here ND is
# added to the FitNet / L2 baseline, so the comparison with L2 alone
# (configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py) isolates what ND adds.
#
# nd: exactly the ND term of nd_retinanet_r18_r18w16_fpn_synth.py (DenseNDLoss on the
#   positive anchors' 64-d last cls-tower features, 4 foreground class means, weight 1.0;
#   the same class-means file: tools/class_means.py on that config).
# fpn_l2: exactly the FitNet baseline's term (FeatureMSELoss on P2-P5, weight 1 per level).
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
        fpn_l2=dict(
            loss=dict(type='FeatureMSELoss', loss_weight=1.0),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck'),
            levels=(0, 1, 2, 3))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
