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
#
# The distiller of _base_/fcfd_faster-rcnn_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher.
_base_ = [
    './_base_/fcfd_faster-rcnn_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

teacher_ckpt = 'work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(roi_head=dict(bbox_head=dict(num_classes=20))),
    teacher='mmkd::teachers/faster-rcnn_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt)
