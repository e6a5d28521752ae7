# FCFD (Liu, Kan, Shan, Chen, "Function-Consistent Feature Distillation", ICLR 2023) on
# COCO: Faster R-CNN R101-FPN teacher (mmdet model zoo, 39.4 box AP) -> Faster R-CNN
# R50-FPN student, 1x schedule (12 epochs, 8 GPUs x 2 images, the student's own mmdet
# config unchanged). The authors trained the same pair for the same number of images
# (detectron2, 8 images x 180k iterations, lr 0.01) with AMP: add --amp to match.
# Bases: those of the student's own mmdet config
# (mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py), its model wrapped in the
# distiller of _base_/fcfd_faster-rcnn_r101-r50_fpn.py, which describes the loss.
_base_ = [
    './_base_/fcfd_faster-rcnn_r101-r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
