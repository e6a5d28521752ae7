# The teacher config on the VOC-format copy of the generated data (VOCDataset, VOCMetric):
# the same model and schedule as retinanet_r18_fpn_teacher_synth.py, VOC data.
_base_ = [
    '../_base_/models/retinanet_r18_fpn_synth.py', '../_base_/datasets/synthetic_det_voc.py',
    '../_base_/schedules/cpu_iters.py', '../_base_/default_runtime.py'
]
# mmkd makes torchvision importable next to a CPU-only torch (stock tools import it)
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

# the teacher's schedule (retinanet_r18_fpn_teacher_synth.py): 2400 iterations
max_iters = 2400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[int(max_iters * 0.75), int(max_iters * 0.9)],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=800))
