# mmpretrain's runtime with mmkd registered, for CPU runs on the generated data: log every
# 50 iterations, a checkpoint every 5 epochs (the last 2 kept), seed 0.
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2, save_last=True))
randomness = dict(seed=0, deterministic=False)
