"""PKD: feature imitation through the Pearson correlation coefficient (Cao et al., NeurIPS 2022).

W. Cao, Y. Zhang, J. Gao, A. Cheng, K. Cheng, J. Cheng. *PKD: General Distillation
Framework for Object Detectors via Pearson Correlation Coefficient.* NeurIPS 2022
(arXiv:2207.02039). Reference implementation: MMRazor's ``PKDLoss``.

Each feature map is normalised per channel to zero mean and unit variance — the
statistics of a channel are taken over the batch and all spatial positions together, as
in MMRazor (``[B, C, H, W] -> [C, B·H·W]``; unbiased std, ``+1e-6`` on the std) — and
half the mean squared error of the normalised maps is the loss. Per channel that is
``(M - 1) / M · (1 - r_c)`` with ``r_c`` the Pearson correlation of the student's and the
teacher's channel ``c`` over its ``M = B·H·W`` values, averaged over channels: the
feature magnitude (which differs between detectors, and for un-normalised inputs can be
huge) no longer matters, only the pattern does.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import MODELS

_EPS = 1e-6


def _normalize(feat: Tensor, mask: Optional[Tensor]) -> Tensor:
    """``[B, C, H, W]`` -> per channel zero mean, unit (unbiased) std; with ``mask``
    ``[B, 1, H, W]`` (0/1) the statistics are over the masked positions only."""
    if mask is None:
        flat = feat.transpose(0, 1).reshape(feat.size(1), -1)  # [C, B*H*W]
        mean = flat.mean(dim=1, keepdim=True)
        std = flat.std(dim=1, keepdim=True)
        out = (flat - mean) / (std + _EPS)
        return out.reshape(feat.size(1), feat.size(0), *feat.shape[2:]).transpose(0, 1)
    count = mask.sum()
    mean = (feat * mask).sum(dim=(0, 2, 3), keepdim=True) / count.clamp(min=1.0)
    var = ((feat - mean).pow(2) * mask).sum(dim=(0, 2, 3), keepdim=True) / \
        (count - 1).clamp(min=1.0)
    return (feat - mean) / (var.sqrt() + _EPS) * mask


def pkd_loss(student_feat: Tensor,
             teacher_feat: Tensor,
             valid_mask: Optional[Tensor] = None,
             resize_student: bool = True) -> Tensor:
    """Half the MSE between per-channel normalised student and teacher feature maps.

    Args:
        student_feat (Tensor): ``[B, C, Hs, Ws]``, one FPN level of the student.
        teacher_feat (Tensor): ``[B, C, Ht, Wt]``, the same level of the teacher; no
            gradient flows into it. Channel counts must agree (PKD uses no adapter).
        valid_mask (Tensor, optional): ``[B, 1, Hm, Wm]`` 1 on real pixels, 0 on the
            batch padding, at any resolution (resized with nearest). mmkd's extension:
            the statistics and the mean are then over real positions only. ``None``
            (default) is exactly MMRazor's PKD.
        resize_student (bool): when the spatial sizes differ, bilinearly resize the
            student map to the teacher's (``True``, MMRazor's default) or the teacher's
            to the student's.

    Returns:
        Tensor: scalar, fp32.
    """
    if student_feat.dim() != 4 or teacher_feat.dim() != 4:
        raise ValueError(f'PKDLoss takes [B, C, H, W] feature maps, got student '
                         f'{tuple(student_feat.shape)} and teacher {tuple(teacher_feat.shape)}')
    if student_feat.shape[:2] != teacher_feat.shape[:2]:
        raise ValueError(
            f'student feature {tuple(student_feat.shape)} and teacher feature '
            f'{tuple(teacher_feat.shape)} differ in batch or channels; PKD compares channel '
            'c with channel c: give both FPNs the same out_channels or add a connector, '
            "e.g. connectors=dict(student_feat=dict(type='ConvConnector', "
            f'in_channels={student_feat.shape[1]}, out_channels={teacher_feat.shape[1]})).')
    s = student_feat.float()
    t = teacher_feat.detach().float()
    if s.shape[2:] != t.shape[2:]:
        if resize_student:
            s = F.interpolate(s, size=t.shape[2:], mode='bilinear', align_corners=False)
        else:
            t = F.interpolate(t, size=s.shape[2:], mode='bilinear', align_corners=False)
    mask = None
    if valid_mask is not None:
        mask = F.interpolate(valid_mask.float(), size=s.shape[2:], mode='nearest')
    diff = (_normalize(s, mask) - _normalize(t, mask)).pow(2)
    if mask is None:
        return diff.mean() / 2
    return diff.sum() / (2 * (mask.sum() * diff.size(1)).clamp(min=1.0))


@MODELS.register_module()
class PKDLoss(nn.Module):
    """``loss_weight · pkd_loss(...)``; see :func:`pkd_loss`.

    Applied per FPN level through ``levels=`` of the loss binding (the levels' losses are
    summed, as MMRazor's one ``PKDLoss`` per level). MMRazor's COCO weights: 6 per level
    for Faster R-CNN, 10 for RetinaNet students.
    """

    def __init__(self, loss_weight: float = 1.0, resize_student: bool = True) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.resize_student = resize_student

    def forward(self,
                student_feat: Tensor,
                teacher_feat: Tensor,
                valid_mask: Optional[Tensor] = None) -> Tensor:
        return self.loss_weight * pkd_loss(student_feat, teacher_feat, valid_mask,
                                           self.resize_student)
