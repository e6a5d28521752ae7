# mmpretrain's runtime with mmkd registered; a checkpoint every 10 epochs (the last 3
# kept) plus the best top-1.
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3, save_last=True,
                    save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0, deterministic=False)
