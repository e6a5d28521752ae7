"""AMD: angular-margin distillation of spatial attention maps.

Jeon, Choi, Shukla, Turaga, "Leveraging Angular Distributions for Improved Knowledge
Distillation", Neurocomputing 2023 (arXiv 2302.14130). See section 4 of the losses spec.

For one student / teacher feature pair (channel counts may differ) and one region of the
map (the whole map, or one of its 4 quadrants for the local variant):

1. attention ``a = sum_c F_c**2`` over the region's positions, ``a <- a / (||a|| + 1e-6)``;
2. ``P = s * cos(m * arccos(clamp(a, -1 + eps, 1 - eps)))``, ``N = s * (1 - a)``,
   ``L = P - log(e^P + e^N) = -softplus(N - P)``;
3. each of ``L, P, N`` is L2-normalised over the region's positions (``x / max(||x||,
   1e-12)``, as :func:`torch.nn.functional.normalize`), and the region's loss is
   ``(MSE(n(L_s), n(L_t)) + MSE(n(P_s), n(P_t)) + MSE(n(N_s), n(N_t))) / 3``.

Everything is computed in fp32 with autocast disabled (``e^64`` overflows fp16); the
loss is returned as fp32. The loss is invariant to the scale of the features, so its
gradient scales as ``1 / |F|``: with fp16 features of large magnitude, use AMP's loss
scaling (``AmpOptimWrapper``) or the gradient may underflow in fp16.

Padding (``valid_mask``)
    mmdet pads the images of a batch with zeros at the right / bottom. Positions marked as
    padding are excluded from every normalisation and from every mean: the MSE of a region
    is a per-image mean over its *valid* positions, and the batch loss is the mean over the
    images that have at least one valid position. Hence the loss of an image does not
    depend on how much padding surrounds it, and with ``valid_mask=None`` the formula is
    exactly the spec's plain element mean over ``[B, HW]``. The mask (any resolution) is
    brought to the teacher's feature size by *area overlap*: a feature position is valid
    iff its cell overlaps a real pixel (``adaptive_max_pool2d``; for integer strides and
    top-left anchored images this equals ``F.interpolate(mode='nearest')``). With
    ``resize=True`` the bilinear resize of the student map may blend a few padded cells
    into the border of the real region, so the invariance is then only approximate.

Local variant (``local_weight > 0``)
    ``loss = local_weight * mean_quadrants + (1 - local_weight) * global``. The quadrants
    are cut per image on its *valid extent* ``(h, w)`` (rows / columns ``0 .. last valid
    one``): rows ``[:h // 2]`` / ``[h // 2:h]`` times columns ``[:w // 2]`` / ``[w // 2:w]``
    (for odd sizes the bottom / right quadrants get the extra row / column). Without a mask
    ``(h, w) = (H, W)``. Because the split follows the valid extent, the local variant is
    padding-invariant too. An empty quadrant (a valid extent of 1 row or column) is left
    out of that image's quadrant mean.
"""
import contextlib
from typing import ContextManager, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import MODELS

__all__ = ['amd_loss', 'AMDLoss']

_ATT_EPS = 1e-6  # a / (||a|| + 1e-6), as in the spec
_NORM_EPS = 1e-12  # F.normalize's default, for n(L), n(P), n(N)


def _no_autocast(device_type: str) -> ContextManager:
    """A context that disables autocast on ``device_type`` (a no-op where unsupported)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _seg_sum(x: Tensor, regions: Optional[Tensor]) -> Tensor:
    """Sum of ``x`` [B, ..., HW] over the positions of each region: [B, ..., R].

    ``regions`` is a one-hot region map [B, R, HW] (fp32), or None for one region (the whole
    map). One-hot products instead of ``scatter_add``: no atomics, deterministic on GPU.
    """
    if regions is None:
        return x.sum(dim=-1, keepdim=True)
    oh = regions.view(regions.shape[0], *([1] * (x.dim() - 2)), *regions.shape[1:])
    return (x.unsqueeze(-2) * oh).sum(dim=-1)


def _seg_gather(v: Tensor, regions: Optional[Tensor], hw: int) -> Tensor:
    """Broadcast per-region values ``v`` [B, ..., R] back to the positions: [B, ..., HW]."""
    if regions is None:
        return v.expand(*v.shape[:-1], hw)
    oh = regions.view(regions.shape[0], *([1] * (v.dim() - 2)), *regions.shape[1:])
    return (v.unsqueeze(-1) * oh).sum(dim=-2)


def _amd_logits(att: Tensor, valid: Tensor, regions: Optional[Tensor], scale: float,
                margin: float, eps: float) -> Tensor:
    """Normalised (L, P, N) of one network.

    Args:
        att (Tensor): Raw attention ``sum_c F_c**2``, fp32, shape [B, HW], >= 0.
        valid (Tensor): 1. for real positions, 0. for padding, shape [B, HW] (fp32).
        regions (Tensor, optional): One-hot region of every position, shape [B, R, HW]
            (fp32); None for a single region.

    Returns:
        Tensor: ``stack([n(L), n(P), n(N)], 1)``, shape [B, 3, HW], zero at padding; each
        region normalised on its own.
    """
    hw = att.shape[-1]
    att = att * valid
    # ||a|| per region, computed as m * ||a / m|| with m = max (detached: the product does
    # not depend on m) so that a**2 cannot overflow fp32 for huge activations.
    det = att.detach()
    if regions is None:
        amax = det.amax(dim=-1, keepdim=True)
    else:
        amax = (det.unsqueeze(1) * regions).amax(dim=-1)  # [B, R]
    amax = _seg_gather(amax.clamp_min(torch.finfo(att.dtype).tiny), regions, hw)
    scaled = att / amax
    # The scaled sum of squares is 0 (all-zero region) or >= 1 (its max is 1), so the
    # clamp changes no value; it only keeps sqrt's backward finite for all-zero regions.
    sumsq = _seg_sum(scaled * scaled, regions).clamp_min(1e-12)
    norm = amax * _seg_gather(sumsq.sqrt(), regions, hw)
    cos = att / (norm + _ATT_EPS)
    pos = scale * torch.cos(margin * torch.acos(cos.clamp(-1.0 + eps, 1.0 - eps)))
    neg = scale * (1.0 - cos)
    logit = -F.softplus(neg - pos)
    x = torch.stack([logit, pos, neg], dim=1) * valid[:, None]  # [B, 3, HW]
    # max(||x||, 1e-12) as sqrt(max(||x||^2, 1e-24)): same value, finite backward at 0.
    xnorm = _seg_sum(x * x, regions).clamp_min(_NORM_EPS**2).sqrt()  # [B, 3, R]
    return x / _seg_gather(xnorm, regions, hw)


def _region_losses(att_s: Tensor, att_t: Tensor, valid: Tensor, regions: Optional[Tensor],
                   scale: float, margin: float, eps: float) -> Tuple[Tensor, Tensor]:
    """AMD loss of every (image, region).

    Args:
        att_s, att_t (Tensor): Raw attention maps, fp32, shape [B, HW].
        valid (Tensor): Validity, fp32, shape [B, HW].
        regions (Tensor, optional): One-hot regions [B, R, HW]; None for the whole map.

    Returns:
        tuple[Tensor, Tensor]: Loss [B, R] (0 for an empty region) and the number of
        valid positions [B, R].
    """
    xs = _amd_logits(att_s, valid, regions, scale, margin, eps)
    xt = _amd_logits(att_t, valid, regions, scale, margin, eps)
    count = _seg_sum(valid, regions)  # [B, R]
    sq = _seg_sum((xs - xt).pow(2), regions)  # [B, 3, R]; padding contributes 0
    return sq.mean(dim=1) / count.clamp_min(1.0), count


def _valid_map(valid_mask: Optional[Tensor], batch: int, size: Tuple[int, int],
               device: torch.device) -> Tensor:
    """The mask at feature resolution, bool [B, H, W].

    A feature position is valid iff its area overlaps a real pixel of the mask
    (``adaptive_max_pool2d``; for integer strides and top-left anchored images this is the
    same as ``F.interpolate(mode='nearest')``). Mask values > 0.5 are real.
    """
    if valid_mask is None:
        return torch.ones(batch, *size, dtype=torch.bool, device=device)
    if not isinstance(valid_mask, Tensor):
        raise ValueError(f'AMD: valid_mask must be a Tensor of shape [B, 1, H, W] or [B, H, W], '
                         f'got {type(valid_mask).__name__}; pass None for no padding.')
    mask = valid_mask
    if mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != batch:
        raise ValueError(f'AMD: valid_mask must have shape [B, 1, H, W] or [B, H, W] with '
                         f'B={batch} (the features\' batch size), got '
                         f'{tuple(valid_mask.shape)}.')
    if mask.shape[-2] == 0 or mask.shape[-1] == 0:
        raise ValueError(f'AMD: valid_mask must have a non-empty spatial size, got '
                         f'{tuple(valid_mask.shape)}.')
    mask = mask.to(device=device, dtype=torch.float32)
    if tuple(mask.shape[-2:]) != tuple(size):
        mask = F.adaptive_max_pool2d(mask, size)
    return mask[:, 0] > 0.5


def _quadrant_ids(valid: Tensor) -> Tensor:
    """Quadrant of every position, cut on each image's valid extent: int64 [B, H, W].

    0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right. Each image's extent is
    ``h = 1 + last row holding a valid position`` (likewise ``w``); rows ``< h // 2`` are
    top, columns ``< w // 2`` left.
    """
    _, h, w = valid.shape
    rows = torch.arange(1, h + 1, device=valid.device)
    cols = torch.arange(1, w + 1, device=valid.device)
    ext_h = (valid.any(dim=2) * rows).amax(dim=1)  # [B]
    ext_w = (valid.any(dim=1) * cols).amax(dim=1)  # [B]
    bottom = (rows - 1)[None, :] >= torch.div(ext_h, 2, rounding_mode='floor')[:, None]
    right = (cols - 1)[None, :] >= torch.div(ext_w, 2, rounding_mode='floor')[:, None]
    return bottom[:, :, None].long() * 2 + right[:, None, :].long()


def amd_loss(student_feat: Tensor,
             teacher_feat: Tensor,
             valid_mask: Optional[Tensor] = None,
             scale: float = 64.0,
             margin: float = 1.35,
             local_weight: float = 0.0,
             resize: bool = False,
             eps: float = 1e-7) -> Tensor:
    """AMD loss of one student / teacher feature pair (unweighted).

    Args:
        student_feat (Tensor): Student features, shape [B, Cs, H, W], any float dtype.
        teacher_feat (Tensor): Teacher features, shape [B, Ct, H', W'] (``Ct`` may differ
            from ``Cs``). Detached: no gradient reaches the teacher.
        valid_mask (Tensor, optional): 1 = real image, 0 = batch padding, shape
            [B, 1, Hm, Wm] or [B, Hm, Wm] at any resolution. It is brought to the
            teacher's feature size by area overlap (a position is valid iff its area
            overlaps a real pixel). Defaults to None (everything valid).
        scale (float): ``s``, the logit scale. Defaults to 64.
        margin (float): ``m``, the angular margin of the positive logit. Defaults to 1.35.
        local_weight (float): Weight of the 4-quadrant local term, in [0, 1]; the global
            term gets ``1 - local_weight``. The paper's global+local uses 0.2.
            Defaults to 0 (global only).
        resize (bool): If the spatial sizes differ, resize the student's attention map
            [B, 1, H, W] bilinearly to the teacher's size (the features are not resized).
            Defaults to False (a size mismatch raises).
        eps (float): Clamp margin of the cosine before ``arccos``. Defaults to 1e-7.

    Returns:
        Tensor: Scalar fp32 loss: mean over images (with at least one valid position) of
        the per-image loss.
    """
    for name, feat in (('student_feat', student_feat), ('teacher_feat', teacher_feat)):
        if not isinstance(feat, Tensor) or feat.dim() != 4:
            shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
            raise ValueError(f'AMD: {name} must be a 4-D tensor [B, C, H, W], got {shape}; '
                             f'pass the feature map itself.')
        if not feat.is_floating_point():
            raise ValueError(f'AMD: {name} must be a floating-point tensor, got '
                             f'{feat.dtype}; cast it with .float().')
    if student_feat.shape[0] != teacher_feat.shape[0]:
        raise ValueError(f'AMD: batch sizes differ (student {student_feat.shape[0]}, '
                         f'teacher {teacher_feat.shape[0]}); feed both the same images.')
    size_s = tuple(student_feat.shape[-2:])
    size_t = tuple(teacher_feat.shape[-2:])
    if size_s != size_t and not resize:
        raise ValueError(f'AMD: student map {size_s} and teacher map {size_t} differ in H x W; '
                         f'distil matching levels or set resize=True.')
    if min(size_t) == 0 or min(size_s) == 0:
        raise ValueError(f'AMD: empty feature map (student {size_s}, teacher {size_t}); '
                         f'choose a level with H, W >= 1.')
    if not 0.0 <= local_weight <= 1.0:
        raise ValueError(f'AMD: local_weight must be in [0, 1], got {local_weight}.')

    batch = student_feat.shape[0]
    device = student_feat.device
    with _no_autocast(device.type):
        att_s = student_feat.float().pow(2).sum(dim=1, keepdim=True)  # [B, 1, H, W]
        att_t = teacher_feat.detach().float().pow(2).sum(dim=1, keepdim=True)
        if size_s != size_t:
            att_s = F.interpolate(att_s, size=size_t, mode='bilinear', align_corners=False)
        att_s = att_s.flatten(1)  # [B, HW]
        att_t = att_t.flatten(1).to(att_s.device)
        valid_b = _valid_map(valid_mask, batch, size_t, att_s.device)  # [B, H, W]
        valid = valid_b.flatten(1).float()

        glob, count = _region_losses(att_s, att_t, valid, None, scale, margin, eps)
        per_image = glob[:, 0]  # [B]
        if local_weight > 0:
            quads = F.one_hot(_quadrant_ids(valid_b).flatten(1), 4)  # [B, HW, 4]
            quads = quads.transpose(1, 2).float()  # [B, 4, HW]
            quad, qcount = _region_losses(att_s, att_t, valid, quads, scale, margin, eps)
            # a region of a single position normalises to constants: no signal, and its
            # gradient is rounding noise, so it is left out like an empty one
            nonempty = (qcount > 1).float()
            quad = (quad * nonempty).sum(dim=1) / nonempty.sum(dim=1).clamp_min(1.0)
            per_image = local_weight * quad + (1.0 - local_weight) * per_image
        has_valid = (count[:, 0] > 1).float()
        return (per_image * has_valid).sum() / has_valid.sum().clamp_min(1.0)


@MODELS.register_module()
class AMDLoss(nn.Module):
    """Angular-margin distillation loss (AMD) on one feature pair.

    Args:
        scale (float): Logit scale ``s``. Defaults to 64.
        margin (float): Angular margin ``m`` (> 0). Defaults to 1.35.
        local_weight (float): Weight in [0, 1] of the mean over the 4 quadrants; the global
            term gets ``1 - local_weight`` (paper's global+local: 0.2). Defaults to 0.
        loss_weight (float): Multiplier of the loss. Defaults to 1.
        resize (bool): Resize the student's attention map bilinearly to the teacher's
            H x W when they differ (else raise). Defaults to False.
        eps (float): Clamp margin before ``arccos``, in (0, 0.5). Defaults to 1e-7.
    """

    def __init__(self,
                 scale: float = 64.0,
                 margin: float = 1.35,
                 local_weight: float = 0.0,
                 loss_weight: float = 1.0,
                 resize: bool = False,
                 eps: float = 1e-7) -> None:
        super().__init__()
        if not (scale > 0 and scale < float('inf')):
            raise ValueError(f'AMDLoss: scale must be a finite positive number, got {scale}.')
        if not (margin > 0 and margin < float('inf')):
            raise ValueError(f'AMDLoss: margin must be a finite positive number, got '
                             f'{margin} (the paper uses 1.35).')
        if not 0.0 <= local_weight <= 1.0:
            raise ValueError(f'AMDLoss: local_weight must be in [0, 1], got {local_weight} '
                             f'(0 = global only, 0.2 = the paper\'s global+local).')
        if not 0.0 < eps < 0.5:
            raise ValueError(f'AMDLoss: eps must be in (0, 0.5), got {eps} (default 1e-7).')
        self.scale = float(scale)
        self.margin = float(margin)
        self.local_weight = float(local_weight)
        self.loss_weight = float(loss_weight)
        self.resize = bool(resize)
        self.eps = float(eps)

    def forward(self,
                student_feat: Tensor,
                teacher_feat: Tensor,
                valid_mask: Optional[Tensor] = None) -> Tensor:
        """Forward function.

        Args:
            student_feat (Tensor): Student features, shape [B, Cs, H, W].
            teacher_feat (Tensor): Teacher features, shape [B, Ct, H', W'] (no gradient).
            valid_mask (Tensor, optional): 1 = real image, 0 = padding, shape
                [B, 1, Hm, Wm] or [B, Hm, Wm], any resolution. Defaults to None.

        Returns:
            Tensor: Scalar fp32 loss times ``loss_weight``.
        """
        return self.loss_weight * amd_loss(
            student_feat,
            teacher_feat,
            valid_mask,
            scale=self.scale,
            margin=self.margin,
            local_weight=self.local_weight,
            resize=self.resize,
            eps=self.eps)

    def extra_repr(self) -> str:
        return (f'scale={self.scale}, margin={self.margin}, '
                f'local_weight={self.local_weight}, loss_weight={self.loss_weight}, '
                f'resize={self.resize}, eps={self.eps}')
