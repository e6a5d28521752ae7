# ND / KD++ on RetinaNet, Pascal VOC 07+12: RetinaNet R101-FPN teacher -> RetinaNet
# R50-FPN student, mmdet's VOC 1x schedule (4 epochs over trainval repeated 3x = 12
# epochs, 8 GPUs x 2 images, the student's own mmdet config unchanged), evaluated on
# VOC2007 test. mmkd's own dense-head extension of ND (no published result), as in
# nd_retinanet_r101-r50_fpn_1x_coco.py: DenseNDLoss (weight 1.0) on the last cls-tower
# conv at the positive anchors' locations against the teacher's 20 foreground class
# means + sigmoid KD on the class logits (T = 1, weight 20 = num_classes).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/retinanet_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below).
# Then the class means (one pass of the frozen teacher over VOC07+12 trainval):
#   python tools/class_means.py configs/nd/nd_retinanet_r101-r50_fpn_1x_voc0712.py
#   (writes class_means below)
# and train:
#   bash tools/dist_train.sh configs/nd/nd_retinanet_r101-r50_fpn_1x_voc0712.py 8
#
# The distiller of _base_/nd_retinanet_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher and the loss settings below.
_base_ = [
    './_base_/nd_retinanet_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

class_means = 'work_dirs/nd_retinanet_r101-r50_fpn_1x_voc0712/class_means.pth'
teacher_ckpt = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(bbox_head=dict(num_classes=20)),
    teacher='mmkd::teachers/retinanet_r101_fpn_1x_voc0712.py',
    distill_losses=dict(
        nd=dict(loss=dict(class_means=class_means, num_classes=20)),
        dense_kd=dict(loss=dict(loss_weight=20.0))),  # num_classes
    teacher_ckpt=teacher_ckpt)
