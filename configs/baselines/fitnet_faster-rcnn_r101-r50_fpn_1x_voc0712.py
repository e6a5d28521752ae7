# FitNet (Romero et al., 2015) baseline on Pascal VOC 07+12: Faster R-CNN R101-FPN
# teacher -> Faster R-CNN R50-FPN student, mmdet's VOC 1x schedule (4 epochs over
# trainval repeated 3x = 12 epochs, 8 GPUs x 2 images, the student's own mmdet config
# unchanged), evaluated on VOC2007 test (11-point mAP@0.5).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/faster-rcnn_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below;
# override with --cfg-options model.teacher_ckpt=PATH).
#
# Loss: on each of the 5 FPN outputs (P2-P6), a 3x3 conv regressor (ConvConnector,
# 256 -> 256, one per level, the FitNet "hint" regressor) maps the student feature onto the
# teacher's and the MSE between them is minimised, averaged over channels and real pixels
# (the batch padding is masked out). loss_weight = 1.0 per level: the per-element MSE of FPN
# features is O(0.1-1) at the start, the same order as the detector's own losses, and it
# decays quickly as the regressor fits; tune in [0.5, 2] if it dominates.
_base_ = ['mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmkd::teachers/faster-rcnn_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt,
    distill_losses=dict(
        fpn_fitnet=dict(
            loss=dict(type='FeatureMSELoss', loss_weight=1.0),
            inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck',
                        valid_mask='valid_mask'),
            levels=(0, 1, 2, 3, 4),
            connectors=dict(student_feat=dict(type='ConvConnector', in_channels=256,
                                              out_channels=256)))))
custom_hooks = [
    dict(type='DistillScheduleHook'),
    dict(type='TeacherEvalHook'),
    dict(type='StudentExportHook'),
]
