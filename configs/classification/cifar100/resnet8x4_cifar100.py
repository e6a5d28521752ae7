# resnet8x4 on CIFAR-100 (student trained alone: the baseline of the distillation configs):
# 240 epochs, SGD lr 0.05, steps 150/180/210, batch 64, RandomCrop(32, pad 4) + flip.
#   python tools/train.py configs/classification/cifar100/resnet8x4_cifar100.py
_base_ = [
    '../_base_/models/cifar_resnet20.py', '../_base_/datasets/cifar100_bs64.py',
    '../_base_/schedules/cifar100_240e.py', '../_base_/cifar_runtime.py'
]
model = dict(backbone=dict(arch='resnet8x4'), head=dict(in_channels=256))
