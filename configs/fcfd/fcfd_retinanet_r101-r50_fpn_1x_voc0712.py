# FCFD on RetinaNet -- mmkd's extension of Liu, Kan, Shan, Chen, "Function-Consistent
# Feature Distillation" (ICLR 2023), which only distils Faster R-CNN -- on Pascal VOC
# 07+12: RetinaNet R101-FPN teacher -> RetinaNet R50-FPN student, mmdet's VOC 1x schedule
# (4 epochs over trainval repeated 3x = 12 epochs, 8 GPUs x 2 images, the student's own
# mmdet config unchanged), evaluated on VOC2007 test (11-point mAP@0.5).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/retinanet_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below;
# override with --cfg-options model.teacher_ckpt=PATH).
#
# Loss: as in fcfd_retinanet_r101-r50_fpn_1x_coco.py (bridges 256 -> 256 on P3-P7; the
# appearance MSE; sigmoid KL per anchor x class, T = 1, kl_weight = num_classes = 20, and
# the deltas' MSE, for the s, st and ts paths; every location counts).
_base_ = ['mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::teachers/retinanet_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        fcfd=dict(
            loss=dict(
                type='FCFDDenseLoss',
                in_channels=256,
                num_levels=5,
                temperature=1.0,
                app_weight=1.0,
                kl_weight=20.0,
                reg_weight=1.0,
                score_thr=None),
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
