# LSHFM (LSHL2; Wang, Ge, Wu, "Distilling Knowledge by Mimicking Features", TPAMI 2022) on
# COCO: Faster R-CNN R101-FPN teacher (mmdet model zoo, 39.4 box AP) -> Faster R-CNN
# R50-FPN student, 1x schedule (12 epochs, 8 GPUs x 2 images). The bases are those of the
# student's own mmdet config (mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py), its
# model wrapped in the distiller of _base_/lsh_faster-rcnn_r101-r50_fpn.py (the loss is
# described there). The authors published VOC results only (see README.md).
_base_ = [
    './_base_/lsh_faster-rcnn_r101-r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
