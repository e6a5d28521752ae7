# The teacher config on the VOC-format copy of the generated data (VOCDataset, VOCMetric).
_base_ = ['./faster_rcnn_r18_fpn_teacher_synth.py', '../_base_/datasets/synthetic_det_voc.py']
# mmkd makes torchvision importable next to a CPU-only torch (stock tools import it)
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
