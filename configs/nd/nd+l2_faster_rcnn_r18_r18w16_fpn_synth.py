# L2 + ND, CPU-sized Faster R-CNN (R18 teacher -> R18 width-16 student, generated data).
# mmkd's own combination, not the paper's: the ND paper adds ND to logit KD (KD++, the
# nd_*.py configs) or to other feature methods (ReviewKD++), never to FitNet. Here ND is
# added to the FitNet / L2 baseline, so the comparison with L2 alone
# (configs/baselines/fitnet_faster_rcnn_r18_r18w16_fpn_synth.py) isolates what ND adds.
#
# nd: exactly the ND term of nd_faster_rcnn_r18_r18w16_fpn_synth.py (NDLoss on the 256-d
#   RoI embeddings of the student's sampled RoIs, 4 classes + background = 5 rows, weight
#   1.0; the same class-means file: tools/class_means.py on that config).
# fpn_l2: exactly the FitNet baseline's term (FeatureMSELoss on P2-P6, weight 1 per level).
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
        fpn_l2=dict(
            loss=dict(type='FeatureMSELoss', loss_weight=1.0),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck'),
            levels=(0, 1, 2, 3, 4))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
