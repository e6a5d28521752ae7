# resnet32 on the generated CIFAR-format data, CPU-sized: the teacher of the synthetic
# distillation configs (train it first). 30 epochs of 10000 images, batch 64 (the students
# train 20: a teacher is trained once, and longer, before distillation; on this data the
# deeper network starts slower than resnet8 and needs the extra epochs to pull ahead).
#   python tools/generate_cls_data.py --out data/synthetic_cls
#   python tools/train.py configs/classification/synthetic/resnet32_synth.py
_base_ = [
    '../_base_/models/cifar_resnet20.py', '../_base_/datasets/synthetic_cifar_bs64.py',
    '../_base_/schedules/synthetic_20e.py', '../_base_/synthetic_runtime.py'
]
model = dict(backbone=dict(arch='resnet32'), head=dict(in_channels=64))
param_scheduler = dict(milestones=[19, 23, 26])  # 5/8, 6/8, 7/8 of 30 epochs
train_cfg = dict(max_epochs=30)
