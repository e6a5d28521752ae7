"""Backbones mmkd adds to mmpretrain's ``MODELS`` (the CIFAR ResNets of the KD
literature)."""
from .cifar_resnet import CIFAR_RESNET_ARCHS, BasicBlock, CIFARResNet

__all__ = ['CIFAR_RESNET_ARCHS', 'BasicBlock', 'CIFARResNet']
