# KD (Hinton et al., 2015) baseline on Pascal VOC 07+12: Faster R-CNN R101-FPN teacher
# -> Faster R-CNN R50-FPN student, mmdet's VOC 1x schedule (4 epochs over trainval
# repeated 3x = 12 epochs, 8 GPUs x 2 images, the student's own mmdet config unchanged),
# evaluated on VOC2007 test (11-point mAP@0.5).
#
# mmdet publishes no R101 VOC weights: train the teacher first with
#   bash tools/dist_train.sh configs/teachers/faster-rcnn_r101_fpn_1x_voc0712.py 8
# which writes work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth (teacher_ckpt below;
# override with --cfg-options model.teacher_ckpt=PATH).
#
# Loss: KL(softmax(z_t / T) || softmax(z_s / T)) * T^2 between the RoI classifiers'
# 21-way logits, both heads run on the student's 512 sampled RoIs per image (the teacher's
# RoI head is fed the student's RoIs on the teacher's FPN features). T = 1, batchmean
# (sum over classes, mean over RoIs), loss_weight = 1.0: the same scale as the student's
# own cross-entropy loss_cls.
#
# The distiller of _base_/kd_faster-rcnn_r101-r50_fpn.py (shared with the COCO
# config) with what differs on VOC: 20 classes, the VOC teacher.
_base_ = [
    './_base_/kd_faster-rcnn_r101-r50_fpn.py',  # the distiller, as on COCO
    'mmdet::_base_/datasets/voc0712.py',
    '../_base_/schedules/voc0712_1x.py',
    'mmdet::_base_/default_runtime.py',
]

teacher_ckpt = 'work_dirs/faster-rcnn_r101_fpn_1x_voc0712/epoch_4.pth'
model = dict(
    student=dict(roi_head=dict(bbox_head=dict(num_classes=20))),
    teacher='mmkd::teachers/faster-rcnn_r101_fpn_1x_voc0712.py',
    teacher_ckpt=teacher_ckpt)
