# Teacher: retinanet ResNet-18 (base width 64, 12.0 M parameters, 9.4x the student's) + FPN
# on the generated data, CPU-sized. AdamW, 1200 iterations (see the schedule file for the
# measurements behind it): trained once, then reused by every distillation.
_base_ = [
    '../_base_/models/retinanet_r18_fpn_synth.py', '../_base_/datasets/synthetic_det_coco.py',
    '../_base_/schedules/cpu_teacher_adamw.py', '../_base_/default_runtime.py'
]
# mmkd makes torchvision importable next to a CPU-only torch (stock tools import it)
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(interval=400))
