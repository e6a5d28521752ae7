# FitNet (Romero et al., 2015) baseline on Pascal VOC 07+12: RetinaNet R101-FPN teacher
# -> RetinaNet R50-FPN student, mmdet's VOC 1x schedule (4 epochs over trainval repeated
# 3x = 12 epochs, 8 GPUs x 2 images, the student's own mmdet config unchanged),
# evaluated on VOC2007 test (11-point mAP@0.5).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/retinanet_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below;
# override with --cfg-options model.teacher_ckpt=PATH).
#
# Loss: on each of the 5 FPN levels (P3-P7), a 3x3 conv regressor (ConvConnector,
# 256 -> 256, one per level, the FitNet "hint" regressor) maps the student feature onto the
# teacher's and the MSE between them is minimised, averaged over channels and real pixels
# (the batch padding is masked out). loss_weight = 1.0 per level: the per-element MSE of FPN
# features is O(0.1-1) at the start, the same order as the detector's own losses, and it
# decays quickly as the regressor fits; tune in [0.5, 2] if it dominates.
#
# The distiller of _base_/fitnet_retinanet_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher.
_base_ = [
    './_base_/fitnet_retinanet_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

teacher_ckpt = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(bbox_head=dict(num_classes=20)),
    teacher='mmkd::teachers/retinanet_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt)
