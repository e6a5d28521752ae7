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
#
# The distiller of _base_/fcfd_retinanet_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher and the loss settings below.
_base_ = [
    './_base_/fcfd_retinanet_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

teacher_ckpt = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(bbox_head=dict(num_classes=20)),
    teacher='mmkd::teachers/retinanet_r101_fpn_1x_voc0712.py',
    distill_losses=dict(fcfd=dict(loss=dict(kl_weight=20.0))),  # num_classes
    teacher_ckpt=teacher_ckpt)
