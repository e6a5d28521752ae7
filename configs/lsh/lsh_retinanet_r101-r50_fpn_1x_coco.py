# LSHFM (LSHL2; Wang, Ge, Wu, "Distilling Knowledge by Mimicking Features", TPAMI 2022) on
# COCO: RetinaNet R101-FPN teacher (mmdet model zoo, 38.5 box AP) -> RetinaNet R50-FPN
# student, 1x schedule (12 epochs, 8 GPUs x 2 images, the student's own mmdet config
# unchanged). The authors published VOC results only (see README.md).
# Bases: those of the student's own mmdet config
# (mmdet::retinanet/retinanet_r50_fpn_1x_coco.py), its model wrapped in the
# distiller of _base_/lsh_retinanet_r101-r50_fpn.py, which describes the loss.
_base_ = [
    './_base_/lsh_retinanet_r101-r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/retinanet_1x_coco.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py',
]
