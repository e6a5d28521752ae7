# The LSHFM authors' Pascal VOC schedule: 24 epochs over VOC07+12 trainval (no
# RepeatDataset: use with ../datasets/voc0712_ms.py), lr x0.1 after epochs 18 and 22, a
# 500-iteration linear warm-up, evaluated every 2 epochs.
# Batch and lr: 8 GPUs x 2 images, lr 0.02 = the authors' 4 GPUs x 2 images, lr 0.01
# with 1000 warm-up iterations, scaled linearly (--auto-scale-lr rescales for other batch
# sizes). RetinaNet halves the lr (its config sets optim_wrapper.optimizer.lr = 0.01).
# A run saves every 2 epochs: set default_hooks.checkpoint.interval = 2 beside it (the
# default hooks belong to the runtime base).
max_epochs = 24
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[18, 22],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
