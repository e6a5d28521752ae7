# The generated CIFAR-format data (python tools/generate_cls_data.py --out
# data/synthetic_cls: 100 classes, 10000 train / 2000 test images of 32x32), read by
# SyntheticCIFAR100 (mmpretrain's CIFAR100 without the md5 checks), with the CIFAR
# augmentation (RandomCrop 32 pad 4 + flip) and the generated set's mean / std.
_base_ = ['./cifar100_bs64.py']
dataset_type = 'SyntheticCIFAR100'
data_root = 'data/synthetic_cls/'
data_preprocessor = dict(
    num_classes=100, mean=[119.1, 116.7, 115.9], std=[53.9, 53.5, 54.9], to_rgb=False)
train_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
