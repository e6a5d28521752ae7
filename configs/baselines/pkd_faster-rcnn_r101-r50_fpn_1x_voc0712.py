# PKD (Cao et al., NeurIPS 2022) baseline on Pascal VOC 07+12: Faster R-CNN R101-FPN
# teacher -> Faster R-CNN R50-FPN student, mmdet's VOC 1x schedule (4 epochs over
# trainval repeated 3x = 12 epochs, 8 GPUs x 2 images, the student's own mmdet config
# unchanged), evaluated on VOC2007 test (11-point mAP@0.5).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/faster-rcnn_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below;
# override with --cfg-options model.teacher_ckpt=PATH).
#
# Loss (PKDLoss, as MMRazor's PKD): on the first four FPN levels (P2-P5), each
# feature map is normalised per channel to zero mean and unit std (statistics over
# the batch and all positions) and half the MSE of the normalised student and
# teacher maps is minimised: 1 - Pearson correlation per channel, so the features'
# magnitude no longer matters. loss_weight = 6 per level (MMRazor's Faster R-CNN config).
# No connector (both FPNs have 256 channels); the batch padding is not masked, as in
# MMRazor (add valid_mask='valid_mask' to the inputs to mask it).
#
# The distiller of _base_/pkd_faster-rcnn_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher.
_base_ = [
    './_base_/pkd_faster-rcnn_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

teacher_ckpt = 'work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(roi_head=dict(bbox_head=dict(num_classes=20))),
    teacher='mmkd::teachers/faster-rcnn_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt)
