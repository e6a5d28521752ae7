"""L2 feature mimicking (FitNet): the baseline every feature loss must beat."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import MODELS


def feature_mse_loss(student_feat: Tensor,
                     teacher_feat: Tensor,
                     valid_mask: Optional[Tensor] = None) -> Tensor:
    """Mean squared error between features of the same shape.

    Args:
        student_feat (Tensor): ``[N, D]`` or ``[B, C, H, W]`` (after a connector).
        teacher_feat (Tensor): same shape, no gradient is taken through it.
        valid_mask (Tensor, optional): ``[B, 1, Hm, Wm]`` 1 on real pixels, 0 on the
            batch padding, at any resolution (resized to ``H×W`` with nearest). Only
            for 4-D features. With a mask the mean is over valid positions.

    Returns:
        Tensor: scalar, fp32.
    """
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(
            f'student feature {tuple(student_feat.shape)} and teacher feature '
            f'{tuple(teacher_feat.shape)} differ in shape; add a connector to the student '
            "side, e.g. connectors=dict(student_feat=dict(type='ConvConnector', "
            f'in_channels={student_feat.shape[1]}, out_channels={teacher_feat.shape[1]})).')
    diff = (student_feat.float() - teacher_feat.detach().float()).pow(2)
    if valid_mask is None:
        return diff.mean()
    mask = F.interpolate(valid_mask.float(), size=diff.shape[-2:], mode='nearest')
    return (diff * mask).sum() / (mask.sum() * diff.size(1)).clamp(min=1.0)


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """``loss_weight · MSE(student_feat, teacher_feat)``; see :func:`feature_mse_loss`."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self,
                student_feat: Tensor,
                teacher_feat: Tensor,
                valid_mask: Optional[Tensor] = None) -> Tensor:
        return self.loss_weight * feature_mse_loss(student_feat, teacher_feat,
                                                   valid_mask)
