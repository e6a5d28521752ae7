# CIFAR-100 as the distillation literature trains it (CRD / mdistiller): batch 64,
# RandomCrop 32 with 4 px zero padding + horizontal flip, mean / std of the training set.
dataset_type = 'CIFAR100'
data_root = 'data/cifar100/'
data_preprocessor = dict(
    num_classes=100,
    mean=[129.304, 124.070, 112.434],  # (0.5071, 0.4865, 0.4409) * 255
    std=[68.170, 65.392, 70.418],  # (0.2673, 0.2564, 0.2762) * 255
    to_rgb=False)  # the pickled images are RGB already

train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
