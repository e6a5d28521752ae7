# The distiller of fitnet_faster-rcnn_r101-r50_fpn_{1x_coco,1x_voc0712}.py, written
# once: they add the data, schedule and runtime bases (and, for VOC, the VOC
# teacher and 20 classes). As written here: mmdet's Faster R-CNN R50-FPN student
# as mmdet ships it (80 classes) and the COCO model-zoo R101-FPN teacher
# (39.4 box AP).
#
# Loss: on each of the 5 FPN outputs (P2-P6), a 3x3 conv regressor (ConvConnector,
# 256 -> 256, one per level, the FitNet "hint" regressor) maps the student feature onto the
# teacher's and the MSE between them is minimised, averaged over channels and real pixels
# (the batch padding is masked out). loss_weight = 1.0 per level: the per-element MSE of FPN
# features is O(0.1-1) at the start, the same order as the detector's own losses, and it
# decays quickly as the regressor fits; tune in [0.5, 2] if it dominates.
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']  # the student
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/'
                'faster_rcnn_r101_fpn_1x_coco/faster_rcnn_r101_fpn_1x_coco_20200130-f513f705.pth')
model = dict(
    _delete_=True,
    type='DetectionDistiller',
    student={{_base_.model}},
    teacher='mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
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
