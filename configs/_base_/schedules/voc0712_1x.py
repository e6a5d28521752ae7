# mmdet's Pascal VOC 1x schedule (the body of mmdet::pascal_voc/*_r50_fpn_1x_voc0712.py),
# shared by the VOC distillation configs: 4 epochs over VOC07+12 trainval repeated 3x
# (mmdet::_base_/datasets/voc0712.py, so 12 epochs in effect), lr x0.1 after epoch 3,
# SGD lr 0.01 for 8 GPUs x 2 images, no warm-up.
max_epochs = 4
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[3],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
# base_batch_size = 8 GPUs x 2 images (--auto-scale-lr rescales for other batch sizes)
auto_scale_lr = dict(enable=False, base_batch_size=16)
