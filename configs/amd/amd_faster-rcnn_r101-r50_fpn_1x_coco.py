# AMD (Jeon, Choi, Shukla, Turaga, "Leveraging Angular Distributions for Improved
# Knowledge Distillation", Neurocomputing 2023) on COCO: Faster R-CNN R101-FPN teacher
# (mmdet model zoo, 39.4 box AP) -> Faster R-CNN R50-FPN student, 1x schedule (12 epochs,
# 8 GPUs x 2 images, the student's own mmdet config unchanged).
# Bases: those of the student's own mmdet config
# (mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py), its model wrapped in the
# distiller of _base_/amd_faster-rcnn_r101-r50_fpn.py, which describes the loss.
_base_ = [
    './_base_/amd_faster-rcnn_r101-r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
