# KD (Hinton et al., 2015) baseline on Pascal VOC 07+12, sigmoid form for a dense
# detector: RetinaNet R101-FPN teacher -> RetinaNet R50-FPN student, mmdet's VOC 1x
# schedule (4 epochs over trainval repeated 3x = 12 epochs, 8 GPUs x 2 images, the
# student's own mmdet config unchanged), evaluated on VOC2007 test (11-point mAP@0.5).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/retinanet_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below;
# override with --cfg-options model.teacher_ckpt=PATH).
#
# Loss: RetinaNet classifies with 20 independent sigmoids per anchor, so KD is the binary
# KL between sigmoid(z_t / T) and sigmoid(z_s / T) of every anchor x class logit of the
# dense head, on each of the 5 FPN levels (P3-P7), summed over levels. T = 1.
# KDLoss(mode='sigmoid') averages the binary KL over all anchor x class elements; with
# loss_weight = num_classes (20) that becomes a sum over classes and a mean over anchor
# positions, the reduction of Hinton's softmax KD (sum over classes, mean over samples).
# Even so the term stays small next to the focal loss (which is divided by the number
# of positive anchors, not of all anchors); raise it if the KD term is negligible.
#
# The distiller of _base_/kd_retinanet_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher and the loss settings below.
_base_ = [
    './_base_/kd_retinanet_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

teacher_ckpt = 'work_dirs/retinanet_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(bbox_head=dict(num_classes=20)),
    teacher='mmkd::teachers/retinanet_r101_fpn_1x_voc0712.py',
    distill_losses=dict(dense_kd=dict(loss=dict(loss_weight=20.0))),  # num_classes
    teacher_ckpt=teacher_ckpt)
