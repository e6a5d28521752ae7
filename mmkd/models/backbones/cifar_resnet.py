"""The CIFAR ResNets of the distillation literature (resnet20/56, resnet8x4/32x4, ...).

The networks of He et al. (2016, section 4.2) as the CRD repository
(``HobbitLong/RepDistiller``, ``models/resnet.py``) and mdistiller
(``mdistiller/models/cifar/resnet.py``) define them, the ones the CIFAR-100 tables of
KD, CRD, DKD, KD++, FCFD... report on:

* a 3×3 stem convolution (stride 1, no bias) + BN + ReLU, no max-pool;
* three stages of ``n = (depth - 2) / 6`` :class:`BasicBlock` s, strides 1 / 2 / 2, so a
  ``32×32`` input gives ``32×32``, ``16×16`` and ``8×8`` stage outputs;
* a projection shortcut (1×1 conv + BN) where the shape changes.

========== ======= ================== ================ =============================
arch        depth   stem / stage width  params (100 cls)  notes
========== ======= ================== ================ =============================
resnet8       8     16 / 16, 32, 64      0.08 M
resnet14     14     16 / 16, 32, 64      0.18 M
resnet20     20     16 / 16, 32, 64      0.28 M          student of resnet56 / 110
resnet32     32     16 / 16, 32, 64      0.47 M
resnet44     44     16 / 16, 32, 64      0.67 M
resnet56     56     16 / 16, 32, 64      0.86 M          teacher
resnet110   110     16 / 16, 32, 64      1.74 M          teacher
resnet8x4     8     32 / 64, 128, 256    1.23 M          student of resnet32x4
resnet32x4   32     32 / 64, 128, 256    7.43 M          teacher
========== ======= ================== ================ =============================

(the "×4" variants widen the stages four-fold but the stem only two-fold, 32 channels,
exactly as in the reference code; parameter counts include the 100-way ``Linear``
classifier, i.e. this backbone + ``GlobalAveragePooling`` + ``LinearClsHead``.)

Module names follow the reference code (``conv1``, ``bn1``, ``layer1..3``, blocks with
``conv1/bn1/conv2/bn2/downsample``), so a reference checkpoint converts by renaming
``fc.*`` to ``head.fc.*`` and prefixing the rest with ``backbone.``; a distillation config
records the stage outputs by module path (``'student.backbone.layer3'``).
"""
from typing import List, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch import Tensor

#: arch name -> (depth, stem width, stage widths)
CIFAR_RESNET_ARCHS = {
    'resnet8': (8, 16, (16, 32, 64)),
    'resnet14': (14, 16, (16, 32, 64)),
    'resnet20': (20, 16, (16, 32, 64)),
    'resnet32': (32, 16, (16, 32, 64)),
    'resnet44': (44, 16, (16, 32, 64)),
    'resnet56': (56, 16, (16, 32, 64)),
    'resnet110': (110, 16, (16, 32, 64)),
    'resnet8x4': (8, 32, (64, 128, 256)),
    'resnet32x4': (32, 32, (64, 128, 256)),
}


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``:
    ``[B, C_in, H, W] -> [B, C_out, H / stride, W / stride]``."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


@MODELS.register_module()
class CIFARResNet(BaseBackbone):
    """CIFAR ResNet backbone (see the module docstring for the table of archs).

    Args:
        arch (str | dict): a name of :data:`CIFAR_RESNET_ARCHS` (``'resnet20'``,
            ``'resnet32x4'``...) or ``dict(depth=..., stem_channels=...,
            stage_channels=(c1, c2, c3))`` with ``(depth - 2) % 6 == 0``.
        out_indices (Sequence[int]): stages (0, 1, 2) whose outputs ``forward``
            returns, in that order. Defaults to ``(2, )``, the last stage (what
            ``GlobalAveragePooling`` + ``LinearClsHead`` need).
        zero_init_residual (bool): zero-initialise the last BN of every block. Defaults
            to False (as the reference code).
        init_cfg (dict | list, optional): MMEngine init config; by default convolutions
            get Kaiming-normal (``fan_out``, ReLU) and BNs weight 1 / bias 0, as the
            reference code.

    Shapes, for a ``[B, 3, 32, 32]`` input: stage ``i`` outputs
    ``[B, stage_channels[i], 32 / 2^i, 32 / 2^i]``; ``forward`` returns the tuple of the
    ``out_indices`` stages.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'resnet20',
                 out_indices: Sequence[int] = (2, ),
                 zero_init_residual: bool = False,
                 init_cfg=None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu'),
                dict(type='Constant', val=1, bias=0, layer='BatchNorm2d')
            ]
        super().__init__(init_cfg)
        if isinstance(arch, str):
            if arch not in CIFAR_RESNET_ARCHS:
                raise ValueError(f'CIFARResNet: unknown arch {arch!r}; choose one of '
                                 f'{sorted(CIFAR_RESNET_ARCHS)} or give dict(depth=..., '
                                 'stem_channels=..., stage_channels=(c1, c2, c3)).')
            depth, stem, stages = CIFAR_RESNET_ARCHS[arch]
        else:
            depth, stem, stages = arch['depth'], arch['stem_channels'], \
                tuple(arch['stage_channels'])
        if (depth - 2) % 6 or depth < 8 or len(stages) != 3:
            raise ValueError(f'CIFARResNet: depth must be 6n + 2 (n >= 1) with three stage '
                             f'widths, got depth={depth}, stage_channels={stages}.')
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i not in (0, 1, 2) for i in out_indices):
            raise ValueError(f'CIFARResNet: out_indices must be a non-empty subset of '
                             f'(0, 1, 2), got {out_indices}.')
        self.arch = arch
        self.depth = depth
        self.num_blocks = (depth - 2) // 6
        self.stem_channels = stem
        self.stage_channels = tuple(stages)
        self.out_indices = out_indices
        self.zero_init_residual = zero_init_residual

        self.conv1 = conv3x3(3, stem)
        self.bn1 = nn.BatchNorm2d(stem)
        in_channels = stem
        for i, (channels, stride) in enumerate(zip(stages, (1, 2, 2))):
            blocks = []
            for j in range(self.num_blocks):
                blocks.append(BasicBlock(in_channels, channels, stride if j == 0 else 1))
                in_channels = channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))

    @property
    def res_layers(self) -> List[str]:
        return ['layer1', 'layer2', 'layer3']

    @property
    def out_channels(self) -> int:
        """Width of the last stage (the embedding size after global pooling)."""
        return self.stage_channels[-1]

    def init_weights(self) -> None:
        super().init_weights()
        if self.zero_init_residual:
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.constant_(module.bn2.weight, 0)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """``[B, 3, H, W]`` -> tuple of the ``out_indices`` stage outputs
        ``[B, C_i, H / 2^i, W / 2^i]``."""
        x = F.relu(self.bn1(self.conv1(x)))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
