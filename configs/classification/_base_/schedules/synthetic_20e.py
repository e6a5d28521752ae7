# CPU-sized schedule on the generated data: the CIFAR recipe (SGD lr 0.05, momentum 0.9,
# weight decay 5e-4, batch 64, lr x0.1 three times at 5/8, 6/8 and 7/8 of training)
# compressed to 20 epochs (3120 iterations).
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[12, 15, 18], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
