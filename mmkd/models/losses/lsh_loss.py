"""LSH feature-mimicking loss.

"Distilling Knowledge by Mimicking Features" (Wang, Ge, Wu; TPAMI 2022, arXiv 2011.01424).

A frozen random projection ``W [H, D]`` (``H`` hash functions) with bias ``b [H]`` turns a
teacher feature into ``H`` hard bits ``y = 1[W f_t + b > 0]``; the student is trained to
produce the same bits with ``BCEWithLogits(W f_s + b, y)``. This constrains the feature
*direction* and leaves its magnitude free. ``with_l2`` adds the plain element-mean MSE
(the paper's ``LSHL2``).
"""
import difflib
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import MODELS


def _check_feats(student_feat: Tensor, teacher_feat: Tensor,
                 in_channels: Optional[int] = None) -> None:
    """Raise ``ValueError`` unless both features are ``[N, D]`` or ``[B, L, D]`` alike."""
    if student_feat.dim() not in (2, 3):
        raise ValueError(
            f'LSH loss: student_feat must be [N, D] or [B, L, D], got shape '
            f'{tuple(student_feat.shape)}; flatten spatial dims into L (e.g. '
            f'x.flatten(2).transpose(1, 2) for a [B, C, H, W] map).')
    if in_channels is not None and teacher_feat.shape[-1] != in_channels:
        raise ValueError(
            f'LSH loss: teacher_feat has D={teacher_feat.shape[-1]} but the loss was built '
            f'with in_channels={in_channels}; set in_channels to the teacher feature '
            f'dimension.')
    if student_feat.shape[-1] != teacher_feat.shape[-1]:
        ds, dt = student_feat.shape[-1], teacher_feat.shape[-1]
        raise ValueError(
            f'LSH loss: student_feat has D={ds} but teacher_feat has D={dt}; add a '
            f'connector on the student side, e.g. connectors=dict(student_feat=dict('
            f"type='LinearConnector', in_channels={ds}, out_channels={dt})).")
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(
            f'LSH loss: student_feat {tuple(student_feat.shape)} and teacher_feat '
            f'{tuple(teacher_feat.shape)} must have the same shape (same samples / '
            f'locations in the same order).')


def teacher_correct_mask(teacher_logits: Tensor, labels: Tensor) -> Tensor:
    """Which samples the teacher classifies correctly, without a host sync.

    Args:
        teacher_logits (Tensor): ``[..., C]`` teacher class scores.
        labels (Tensor): ``[...]`` integer ground-truth labels.

    Returns:
        Tensor: ``[...]`` float32 mask, 1 where ``argmax(teacher_logits) == labels``.
    """
    if teacher_logits.shape[:-1] != labels.shape:
        raise ValueError(
            f'LSH loss: teacher_logits {tuple(teacher_logits.shape)} must be [..., C] with '
            f'the leading dims equal to labels {tuple(labels.shape)}.')
    return (teacher_logits.detach().argmax(dim=-1) == labels).float()


def lsh_loss(student_feat: Tensor,
             teacher_feat: Tensor,
             proj_weight: Tensor,
             proj_bias: Optional[Tensor] = None,
             mask: Optional[Tensor] = None,
             with_l2: bool = True,
             teacher_logits: Optional[Tensor] = None,
             labels: Optional[Tensor] = None) -> Tensor:
    """LSH (+ L2) feature-mimicking loss, computed in fp32.

    Per sample ``i``: ``l_i = mean_h BCEWithLogits((W f_s,i + b)_h, y_ih)`` with
    ``y = 1[W f_t + b > 0]`` (no gradient teacher-side), plus ``mean_d (f_s,i - f_t,i)_d^2``
    when ``with_l2``. A ``[N, D]`` input is treated as one image of ``N`` samples.
    The result is the mean of ``l_i`` over kept samples per image, then the mean over
    images with at least one kept sample; with nothing kept it is 0 (still connected to
    ``student_feat`` for autograd, never NaN).

    Args:
        student_feat (Tensor): ``[N, D]`` or ``[B, L, D]`` student features.
        teacher_feat (Tensor): same shape as ``student_feat``; detached here.
        proj_weight (Tensor): ``[H, D]`` frozen hash projection ``W``.
        proj_bias (Tensor, optional): ``[H]`` hash bias ``b``; ``None`` means 0.
        mask (Tensor, optional): ``[N]`` or ``[B, L]`` (bool or float, 1 = keep); float
            values act as per-sample weights. ``None`` keeps everything.
        with_l2 (bool): add the element-mean MSE term. Defaults to True.
        teacher_logits (Tensor, optional): ``[N, C]`` / ``[B, L, C]``; together with
            ``labels`` (``[N]`` / ``[B, L]``) restricts the mean to the samples the teacher
            classifies correctly (the paper's ``LSHL2_s``). Both or neither.
        labels (Tensor, optional): see ``teacher_logits``.

    Returns:
        Tensor: scalar fp32 loss (not multiplied by any loss weight).
    """
    _check_feats(student_feat, teacher_feat)
    if proj_weight.dim() != 2 or proj_weight.shape[1] != student_feat.shape[-1]:
        raise ValueError(
            f'LSH loss: proj_weight must be [H, D] with D={student_feat.shape[-1]}, got '
            f'{tuple(proj_weight.shape)}.')
    if proj_bias is not None and proj_bias.shape != proj_weight.shape[:1]:
        raise ValueError(
            f'LSH loss: proj_bias must be [H]={tuple(proj_weight.shape[:1])}, got '
            f'{tuple(proj_bias.shape)}.')
    lead = student_feat.shape[:-1]  # [N] or [B, L]
    if mask is not None and mask.shape != lead:
        raise ValueError(
            f'LSH loss: mask must have shape {tuple(lead)} (the features without D), got '
            f'{tuple(mask.shape)}.')
    if (teacher_logits is None) != (labels is None):
        raise ValueError(
            'LSH loss: teacher_logits and labels must be given together (they select the '
            'samples the teacher classifies correctly).')
    if labels is not None and labels.shape != lead:
        raise ValueError(
            f'LSH loss: labels must have shape {tuple(lead)} (one per feature), got '
            f'{tuple(labels.shape)}.')

    with torch.autocast(device_type=student_feat.device.type, enabled=False):
        fs = student_feat.float()
        weight = proj_weight.detach().float()
        bias = None if proj_bias is None else proj_bias.detach().float()
        with torch.no_grad():
            ft = teacher_feat.detach().float()
            target = (F.linear(ft, weight, bias) > 0).float()
        logits = F.linear(fs, weight, bias)  # [..., H], fp32
        per_sample = F.binary_cross_entropy_with_logits(
            logits, target, reduction='none').mean(dim=-1)
        if with_l2:
            per_sample = per_sample + (fs - ft).pow(2).mean(dim=-1)

        keep = torch.ones_like(per_sample) if mask is None else mask.detach().float()
        if teacher_logits is not None:
            keep = keep * teacher_correct_mask(teacher_logits, labels)
        if per_sample.dim() == 1:  # [N] -> one image
            per_sample, keep = per_sample.unsqueeze(0), keep.unsqueeze(0)
        # Dropped locations may hold anything (padding): zero them, do not multiply inf by 0.
        weighted = torch.where(keep > 0, per_sample, per_sample.new_zeros(())) * keep
        denom = keep.sum(dim=1)  # [B]
        per_image = weighted.sum(dim=1) / denom.clamp(min=torch.finfo(denom.dtype).tiny)
        valid = (denom > 0).float()
        return (per_image * valid).sum() / valid.sum().clamp(min=1.0)


class _FrozenProjection(nn.Module):
    """Holds the frozen hash projection as buffers ``weight [H, D]`` and ``bias [H]``.

    Buffers (not ``nn.Linear`` parameters) so that they are saved in / restored from the
    state dict, broadcast by DDP, and never seen by the optimizer or weight decay.
    """

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.register_buffer('weight', weight)
        self.register_buffer('bias', bias)

    def extra_repr(self) -> str:
        return f'num_hashes={self.weight.shape[0]}, in_channels={self.weight.shape[1]}, frozen'


@MODELS.register_module()
class LSHLoss(nn.Module):
    """LSH / LSHL2 / LSHL2_s feature-mimicking loss.

    The hash projection lives in ``self.projection`` as two float32 *buffers*,
    ``projection.weight [num_hashes, in_channels]`` and ``projection.bias [num_hashes]``.
    ``W`` is drawn on CPU from ``torch.Generator().manual_seed(seed)`` as ``N(0, sigma^2)``,
    so every process (every DDP rank) built with the same seed holds identical values; they
    are checkpointed and restored on resume, and the module has no trainable parameters.

    Args:
        in_channels (int): feature dimension ``D`` (the teacher's; a student of another
            width needs a connector).
        num_hashes (int, optional): number of hash functions ``H``. Defaults to
            ``4 * in_channels`` (detection); the paper uses ``32 * D`` on CIFAR and 2048 on
            ImageNet.
        sigma (float | str): std of ``W``. A string is the dotted name of a teacher
            parameter (e.g. ``'roi_head.bbox_head.fc_cls.weight'``) whose std is used: ``W``
            is drawn with std 1 at build and redrawn (same seed) by
            :meth:`init_from_teacher`, which the distiller calls after loading the teacher
            checkpoint. Defaults to 1.0.
        bias (float): initial value of every hash bias. Defaults to 0 (detection,
            ImageNet); see :meth:`fit_bias` for the CIFAR median bias.
        with_l2 (bool): add the element-mean MSE term (``LSHL2``). Defaults to True.
        loss_weight (float): the paper's ``beta`` (7 for detection). Defaults to 1.0.
        seed (int): seed of the projection. Defaults to 0.
        correct_only (bool): average only over the samples the teacher classifies
            correctly (``LSHL2_s``); ``forward`` then needs ``teacher_logits`` and
            ``labels``. Defaults to False (they are then ignored if passed).
    """

    def __init__(self,
                 in_channels: int,
                 num_hashes: Optional[int] = None,
                 sigma: Union[float, str] = 1.0,
                 bias: float = 0.0,
                 with_l2: bool = True,
                 loss_weight: float = 1.0,
                 seed: int = 0,
                 correct_only: bool = False) -> None:
        super().__init__()
        if int(in_channels) <= 0:
            raise ValueError(f'LSHLoss: in_channels must be positive, got {in_channels}.')
        num_hashes = 4 * int(in_channels) if num_hashes is None else int(num_hashes)
        if num_hashes <= 0:
            raise ValueError(f'LSHLoss: num_hashes must be positive, got {num_hashes}.')
        if isinstance(sigma, str):
            self.sigma_from: Optional[str] = sigma
            init_sigma = 1.0
        else:
            self.sigma_from = None
            init_sigma = float(sigma)
            if init_sigma <= 0:
                raise ValueError(f'LSHLoss: sigma must be positive, got {sigma}.')
        self.sigma = sigma
        self.in_channels = int(in_channels)
        self.num_hashes = num_hashes
        self.with_l2 = with_l2
        self.loss_weight = loss_weight
        self.seed = int(seed)
        self.correct_only = correct_only
        self.projection = _FrozenProjection(
            self._draw_weight(init_sigma),
            torch.full((num_hashes, ), float(bias), dtype=torch.float32))

    def _draw_weight(self, sigma: float) -> Tensor:
        """``[H, D]`` float32 CPU draw of ``N(0, sigma^2)`` from this loss's seed."""
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randn(self.num_hashes, self.in_channels, generator=gen,
                           dtype=torch.float32) * sigma

    @torch.no_grad()
    def init_from_teacher(self, teacher: nn.Module) -> None:
        """Set ``sigma`` from a teacher parameter (when ``sigma`` was a name).

        Call after the teacher checkpoint is loaded. Redraws ``W`` with the same seed
        scaled by the parameter's std; the bias is left as it is. Idempotent, and a no-op
        when ``sigma`` was a number.

        Args:
            teacher (nn.Module): the (loaded) teacher network.
        """
        if self.sigma_from is None:
            return
        params = dict(teacher.named_parameters())
        if self.sigma_from not in params:
            close = difflib.get_close_matches(self.sigma_from, list(params), n=5)
            hint = (f' Close names: {close}.' if close else
                    f' The teacher has {len(params)} parameters, e.g. {list(params)[:5]}.')
            raise ValueError(
                f"LSHLoss: sigma='{self.sigma_from}' is not a parameter of the teacher "
                f'({type(teacher).__name__}).{hint}')
        std = float(params[self.sigma_from].detach().float().std())
        if not std > 0:  # also catches NaN
            raise ValueError(
                f"LSHLoss: the std of teacher parameter '{self.sigma_from}' is {std}; was the "
                f'teacher checkpoint loaded?')
        self.projection.weight.copy_(self._draw_weight(std))

    @torch.no_grad()
    def fit_bias(self, teacher_feat: Tensor, mode: str = 'median') -> Tensor:
        """Set ``b = -median_m(W f_t,m)`` (or ``-mean``) so each bit splits ~50/50.

        Args:
            teacher_feat (Tensor): ``[M, D]`` (or ``[..., D]``) teacher features, e.g. over
                the whole training set. Memory is ``M * num_hashes`` floats.
            mode (str): ``'median'`` or ``'mean'``.

        Returns:
            Tensor: the new bias ``[num_hashes]`` (also stored in ``projection.bias``).
        """
        if mode not in ('median', 'mean'):
            raise ValueError(f"LSHLoss.fit_bias: mode must be 'median' or 'mean', got {mode!r}.")
        if teacher_feat.shape[-1] != self.in_channels or teacher_feat.numel() == 0:
            raise ValueError(
                f'LSHLoss.fit_bias: teacher_feat must be a non-empty [M, {self.in_channels}] '
                f'tensor, got {tuple(teacher_feat.shape)}.')
        feat = teacher_feat.detach().reshape(-1, self.in_channels).float()
        weight = self.projection.weight.float().to(feat.device)
        proj = feat @ weight.t()  # [M, H]
        center = proj.median(dim=0).values if mode == 'median' else proj.mean(dim=0)
        self.projection.bias.copy_(-center)
        return self.projection.bias

    def forward(self,
                student_feat: Tensor,
                teacher_feat: Tensor,
                mask: Optional[Tensor] = None,
                teacher_logits: Optional[Tensor] = None,
                labels: Optional[Tensor] = None) -> Tensor:
        """Compute the weighted loss.

        Args:
            student_feat (Tensor): ``[N, D]`` or ``[B, L, D]`` student features.
            teacher_feat (Tensor): same shape, teacher features (no gradient taken).
            mask (Tensor, optional): ``[N]`` / ``[B, L]``, 1 = keep. In the ``[B, L, D]``
                form the loss is averaged over kept locations per image, then over images
                with at least one kept location.
            teacher_logits (Tensor, optional): ``[N, C]``; used only if ``correct_only``.
            labels (Tensor, optional): ``[N]`` long; used only if ``correct_only``.

        Returns:
            Tensor: scalar loss, ``loss_weight * (L_LSH [+ L_L2])``.
        """
        _check_feats(student_feat, teacher_feat, self.in_channels)
        if self.correct_only:
            if teacher_logits is None or labels is None:
                raise ValueError(
                    'LSHLoss(correct_only=True) needs teacher_logits [N, C] and labels [N] in '
                    'forward; wire them in the distiller config, or set correct_only=False.')
        else:
            teacher_logits = labels = None
        loss = lsh_loss(student_feat, teacher_feat, self.projection.weight,
                        self.projection.bias, mask=mask, with_l2=self.with_l2,
                        teacher_logits=teacher_logits, labels=labels)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, num_hashes={self.num_hashes}, '
                f'sigma={self.sigma!r}, with_l2={self.with_l2}, loss_weight={self.loss_weight}, '
                f'seed={self.seed}, correct_only={self.correct_only}')
