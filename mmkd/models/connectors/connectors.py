"""Connectors: small trainable adapters from the student's feature space to the
teacher's. They belong to the distiller (trained, saved for resume) and are dropped when
the student is exported."""
import torch.nn as nn
from torch import Tensor

from mmkd.registry import MODELS


def _check_channels(x: Tensor, expected: int, dim: int, name: str) -> None:
    if x.size(dim) != expected:
        raise ValueError(
            f'{name} expects {expected} input channels but got a feature of shape '
            f'{tuple(x.shape)}; set in_channels={x.size(dim)} in its config.')


@MODELS.register_module()
class ConvConnector(nn.Module):
    """1×1 convolution (FitNet regressor): ``[B, C_in, H, W] -> [B, C_out, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, self.in_channels, 1, type(self).__name__)
        return self.conv(x)


@MODELS.register_module()
class ConvBNConnector(nn.Module):
    """3×3 convolution without bias + BatchNorm, Kaiming-initialised (FCFD's bridge):
    ``[B, C_in, H, W] -> [B, C_out, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.kaiming_normal_(self.conv.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, self.in_channels, 1, type(self).__name__)
        if self.training and x.dim() == 4 and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            raise ValueError(
                f'{type(self).__name__}: BatchNorm needs more than one value per channel '
                f'in training, got a {list(x.shape)} feature (one image per process and '
                'a 1x1 feature map, e.g. the last FPN level of small images); use at '
                'least 2 images per process (train_dataloader.batch_size) or larger images')
        return self.bn(self.conv(x))


@MODELS.register_module()
class LinearConnector(nn.Module):
    """Linear map on the last dimension: ``[..., D_in] -> [..., D_out]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, self.in_channels, -1, type(self).__name__)
        return self.fc(x)


@MODELS.register_module()
class NDProjector(nn.Module):
    """ND's embedding projector: BatchNorm1d → Dropout → Linear, ``[N, D_in] -> [N, D_out]``.

    Used only for the ND loss when the student and teacher embeddings differ in size.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.bn = nn.BatchNorm1d(in_channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, self.in_channels, -1, type(self).__name__)
        return self.fc(self.dropout(self.bn(x)))
