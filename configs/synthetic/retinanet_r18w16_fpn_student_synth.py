# Student: retinanet ResNet-18 at a quarter of the width (base 16, 1.05 M parameters) + the
# same FPN (P2-P5) and head, CPU-sized. Every distilled student uses the same schedule (600
# iterations here; the demo trains 400): the teacher's AdamW at batch 4, half the compute of
# batch 8 with SGD for the same student-alone AP (measurements in cpu_adamw.py).
_base_ = [
    '../_base_/models/retinanet_r18_fpn_synth.py', '../_base_/datasets/synthetic_det_coco.py',
    '../_base_/schedules/cpu_adamw.py', '../_base_/default_runtime.py'
]
# mmkd makes torchvision importable next to a CPU-only torch (stock tools import it)
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
model = dict(
    backbone=dict(base_channels=16), neck=dict(in_channels=[16, 32, 64, 128]))
train_dataloader = dict(batch_size=4)

max_iters = 600
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
default_hooks = dict(checkpoint=dict(interval=200))
