# Teacher: faster_rcnn ResNet-18 (base width 64) + FPN on the generated data, CPU-sized.
_base_ = [
    '../_base_/models/faster_rcnn_r18_fpn_synth.py', '../_base_/datasets/synthetic_det_coco.py',
    '../_base_/schedules/cpu_iters.py', '../_base_/default_runtime.py'
]
# mmkd makes torchvision importable next to a CPU-only torch (stock tools import it)
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
