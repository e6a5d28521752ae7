# FCFD (Liu, Kan, Shan, Chen, "Function-Consistent Feature Distillation", ICLR 2023) on
# Pascal VOC 07+12: Faster R-CNN R101-FPN teacher -> Faster R-CNN R50-FPN student, mmdet's
# VOC 1x schedule (4 epochs over trainval repeated 3x = 12 epochs, 8 GPUs x 2 images, the
# student's own mmdet config unchanged), evaluated on VOC2007 test (11-point mAP@0.5).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/faster-rcnn_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below;
# override with --cfg-options model.teacher_ckpt=PATH).
#
# Loss: as in fcfd_faster-rcnn_r101-r50_fpn_1x_coco.py (T = 1, all weights 1.0; bridges
# 256 -> 256 per FPN level, B_t->s on P2-P5 only; KL over the 21 VOC classes + background
# and MSE of the class-specific box deltas, for the s, st and ts paths, on the student's
# sampled RoIs). Optional: --cfg-options "model.inherit=[neck,rpn_head,roi_head]".
_base_ = ['mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::teachers/faster-rcnn_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt,
    inherit=None,
    distill_losses=dict(
        fcfd=dict(
            loss=dict(
                type='FCFDRoILoss',
                in_channels=256,
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
