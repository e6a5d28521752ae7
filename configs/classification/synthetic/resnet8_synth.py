# resnet8 on the generated CIFAR-format data, CPU-sized: the student trained alone, the
# baseline of the synthetic distillation configs (same schedule, same seed). 20 epochs of
# 10000 images, batch 64.
#   python tools/generate_cls_data.py --out data/synthetic_cls
#   python tools/train.py configs/classification/synthetic/resnet8_synth.py
_base_ = [
    '../_base_/models/cifar_resnet20.py', '../_base_/datasets/synthetic_cifar_bs64.py',
    '../_base_/schedules/synthetic_20e.py', '../_base_/synthetic_runtime.py'
]
model = dict(backbone=dict(arch='resnet8'), head=dict(in_channels=64))
