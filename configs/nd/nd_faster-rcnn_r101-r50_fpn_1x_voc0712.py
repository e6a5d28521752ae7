# ND / KD++ (Wang et al., ECCV 2024) on Pascal VOC 07+12: Faster R-CNN R101-FPN teacher
# -> Faster R-CNN R50-FPN student, mmdet's VOC 1x schedule (4 epochs over trainval
# repeated 3x = 12 epochs, 8 GPUs x 2 images, the student's own mmdet config unchanged),
# evaluated on VOC2007 test. The losses are those of the COCO config
# (nd_faster-rcnn_r101-r50_fpn_1x_coco.py): ND (weight 1.0) on the 1024-d RoI embedding of
# the student's sampled RoIs against the teacher's class means (20 classes + background =
# 21 rows) + RoI-logit KD (T = 1, weight 1.0). The authors published no VOC numbers.
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/faster-rcnn_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below).
# Then the class means (one pass of the frozen teacher over VOC07+12 trainval):
#   python tools/class_means.py configs/nd/nd_faster-rcnn_r101-r50_fpn_1x_voc0712.py
#   (writes class_means below)
# and train:
#   bash tools/dist_train.sh configs/nd/nd_faster-rcnn_r101-r50_fpn_1x_voc0712.py 8
#
# The distiller of _base_/nd_faster-rcnn_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher and the loss settings below.
_base_ = [
    './_base_/nd_faster-rcnn_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

class_means = 'work_dirs/nd_faster-rcnn_r101-r50_fpn_1x_voc0712/class_means.pth'
teacher_ckpt = 'work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(roi_head=dict(bbox_head=dict(num_classes=20))),
    teacher='mmkd::teachers/faster-rcnn_r101_fpn_1x_voc0712.py',
    distill_losses=dict(
        # 20 classes + background
        nd=dict(loss=dict(class_means=class_means, num_classes=21))),
    teacher_ckpt=teacher_ckpt)
