# Teacher: retinanet ResNet-18 (base width 64, 11.6 M parameters, 11x the student's) + FPN
# P2-P5 on the generated data, CPU-sized. AdamW (see the schedule file for the measurements
# behind it), 1600 iterations in the demo (tools/demo.py): trained once, then reused by
# every distillation.
_base_ = [
    '../_base_/models/retinanet_r18_fpn_synth.py', '../_base_/datasets/synthetic_det_coco.py',
    '../_base_/schedules/cpu_adamw.py', '../_base_/default_runtime.py'
]
# mmkd makes torchvision importable next to a CPU-only torch (stock tools import it)
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(interval=400))
