# The teacher config on the VOC-format copy of the generated data (VOCDataset, VOCMetric):
# the same model and schedule as retinanet_r18_fpn_teacher_synth.py, VOC data.
_base_ = [
    '../_base_/models/retinanet_r18_fpn_synth.py', '../_base_/datasets/synthetic_det_voc.py',
    '../_base_/schedules/cpu_adamw.py', '../_base_/default_runtime.py'
]
# mmkd makes torchvision importable next to a CPU-only torch (stock tools import it)
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(interval=400))
