"""LSH feature mimicking on a dense head's per-location features (LSHFM for RetinaNet).

"Distilling Knowledge by Mimicking Features" (Wang, Ge, Wu; TPAMI 2022, arXiv 2011.01424),
RetinaNet application: on every FPN level, the output of the 4-conv classification tower
(``[B, C, H_l, W_l]``, after ReLU) is unfolded 3×3 with padding 1, so each location is
described by its ``9·C``-d neighbourhood (2304-d for a 256-channel head); the locations of
all levels are concatenated and the LSH (+ L2) loss of :mod:`.lsh_loss` is applied to them.
Locations whose anchors are all in the assigner's ignore band are dropped (``mask``); the
loss is the mean over the kept locations of each image, then the mean over the images with
at least one kept location.

The math is :func:`~mmkd.models.losses.lsh_loss.lsh_loss`'s; this file only lays the
features out and bounds the memory (see :func:`dense_lsh_loss`).
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from mmkd.registry import MODELS
from .lsh_loss import LSHLoss, lsh_loss

Levels = Union[Tensor, Sequence[Tensor]]


def _as_levels(feats: Levels, name: str) -> Tuple[Tensor, ...]:
    if isinstance(feats, Tensor):
        feats = (feats, )
    if not isinstance(feats, (tuple, list)) or not feats or \
            not all(isinstance(f, Tensor) and f.dim() == 4 for f in feats):
        raise ValueError(
            f'dense LSH loss: {name} must be a [B, C, H, W] tensor or a tuple of them (one per '
            f'FPN level, e.g. the source "student.bbox_head.cls_convs.3"), got '
            f'{type(feats).__name__}'
            + (f' of shapes {[tuple(getattr(f, "shape", ())) for f in feats]}'
               if isinstance(feats, (tuple, list)) else '') + '.')
    return tuple(feats)


def check_dense_inputs(student_feat: Levels,
                       teacher_feat: Levels,
                       mask: Optional[Levels] = None,
                       in_channels: Optional[int] = None
                       ) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...], Optional[Tuple]]:
    """Validate the per-level inputs; return them as tuples. Raises a one-line
    ``ValueError`` naming the problem and the fix."""
    student = _as_levels(student_feat, 'student_feat')
    teacher = _as_levels(teacher_feat, 'teacher_feat')
    if len(student) != len(teacher):
        raise ValueError(
            f'dense LSH loss: student_feat has {len(student)} levels but teacher_feat '
            f'{len(teacher)}; both detectors must have the same FPN levels.')
    for level, (s, t) in enumerate(zip(student, teacher)):
        if s.shape[1] != t.shape[1]:
            raise ValueError(
                f'dense LSH loss: level {level}: the student tower has {s.shape[1]} channels, '
                f'the teacher {t.shape[1]}; the heads must have the same feat_channels '
                '(tuple inputs take no connector).')
        if s.shape != t.shape:
            raise ValueError(
                f'dense LSH loss: level {level}: student {tuple(s.shape)} and teacher '
                f'{tuple(t.shape)} feature maps differ; both must see the same batch at the '
                'same strides.')
    if in_channels is not None and 9 * teacher[0].shape[1] != in_channels:
        raise ValueError(
            f'dense LSH loss: a 3x3 unfold of {teacher[0].shape[1]}-channel maps gives '
            f'{9 * teacher[0].shape[1]}-d features but in_channels={in_channels}; set '
            f'in_channels={9 * teacher[0].shape[1]} (9 x the tower channels).')
    masks = None
    if mask is not None:
        masks = tuple(mask) if isinstance(mask, (tuple, list)) else (mask, )
        if len(masks) != len(student):
            raise ValueError(
                f'dense LSH loss: mask has {len(masks)} levels but the features {len(student)}'
                '; wire mask to "dense.keep_mask" (one [B, H_l*W_l] mask per level).')
        for level, (m, s) in enumerate(zip(masks, student)):
            expect = (s.shape[0], s.shape[2] * s.shape[3])
            if tuple(m.shape) != expect:
                raise ValueError(
                    f'dense LSH loss: level {level}: mask has shape {tuple(m.shape)}, expected '
                    f'[B, H*W] = {list(expect)} for a {tuple(s.shape)} feature map.')
    return student, teacher, masks


def unfold_levels(feats: Sequence[Tensor]) -> Tensor:
    """3×3 neighbourhoods of every location of every level, concatenated.

    Args:
        feats (Sequence[Tensor]): per level ``[B, C, H_l, W_l]``.

    Returns:
        Tensor: ``[B, L, 9·C]`` with ``L = Σ_l H_l·W_l`` (levels in order, row-major
        locations within a level; ``F.unfold``'s channel-major ``(c, dy, dx)`` layout,
        zero padding at the borders). Same dtype as the input.
    """
    return torch.cat([F.unfold(f, kernel_size=3, padding=1).transpose(1, 2) for f in feats],
                     dim=1)


def location_weights(masks: Optional[Sequence[Tensor]], batch: int, num_locations: int,
                     device: torch.device) -> Tensor:
    """``[B, L]`` float32 weights ``w`` with ``Σ_{b,l} w_bl · loss_bl`` = the mean over
    kept locations per image, then over images with at least one kept location.

    ``w_bl = keep_bl / (n_b · V)`` where ``n_b`` = kept locations of image ``b`` and
    ``V`` = images with ``n_b > 0`` (all zero when nothing is kept). No host sync.
    """
    if masks is None:
        keep = torch.ones(batch, num_locations, device=device)
    else:
        keep = torch.cat([m.detach().reshape(batch, -1).float() for m in masks], dim=1)
    kept = keep.sum(dim=1, keepdim=True)  # [B, 1]
    num_valid = (kept > 0).float().sum().clamp(min=1.0)
    return keep / (kept.clamp(min=1.0) * num_valid)


def dense_lsh_loss(student_feat: Levels,
                   teacher_feat: Levels,
                   proj_weight: Tensor,
                   proj_bias: Optional[Tensor] = None,
                   mask: Optional[Levels] = None,
                   with_l2: bool = True,
                   chunk_size: int = 4096,
                   checkpoint: bool = True) -> Tensor:
    """LSH (+ L2) loss on 3×3-unfolded dense features, in fp32, with bounded memory.

    Equal to ``lsh_loss(unfold(f_s), unfold(f_t), W, b, mask=keep)`` on the ``[B, L, 9C]``
    layout (per-image mean over kept locations, then mean over images with one or more),
    computed over the ``B·L`` locations in chunks of ``chunk_size`` rows: each chunk
    calls :func:`lsh_loss` with per-location weights (:func:`location_weights`) as its
    float ``mask`` and is rescaled by the weights' sum, so the chunks add up to the
    batch loss exactly.

    Memory: the hash logits of one chunk are ``chunk_size × H`` fp32; with
    ``checkpoint=True`` (and a student that requires grad) a chunk keeps nothing for the
    backward pass but its inputs — its logits, targets and BCE terms are recomputed
    chunk by chunk in backward — so the loss's peak is the unfolded student and teacher
    features and, in backward, the student's gradient (``B·L·9C`` elements each, input
    dtype) plus one chunk's working set (~``4 · chunk_size · H`` fp32), whatever the
    number of hashes. Without it every chunk's fp32 ``[chunk, H]`` logits and targets
    stay alive until backward, like an unchunked loss: ~``2 · B·L·H`` floats kept,
    ~``4 · B·L·H`` at the backward peak (measured on CPU: 4.2 floats per location and
    hash unchunked vs. ~3 feature copies per location chunked).

    Full size (RetinaNet, 2 images of 1333×800 per GPU: ``B·L`` ≈ 44.8k locations,
    ``9C`` = 2304, ``H`` = 4096): chunked + recomputed ≈ 3 × 0.41 GB of fp32 features
    (half under fp16 AMP) + 0.27 GB ≈ 1.5 GB; without recomputation ≈ 3 GB more. A
    1333×800 + 800×1333 batch pads to 1344×1344 (≈ 75k locations): ≈ 2.4 GB vs ≈ 7 GB.
    Compute: 5 ``[B·L, 9C] × [9C, H]`` products per step with recomputation (teacher
    and student logits twice, one gradient), 3 without; fp32, autocast disabled.

    Args:
        student_feat: per level ``[B, C, H_l, W_l]`` (a tuple, or one tensor).
        teacher_feat: same shapes; no gradient is taken.
        proj_weight (Tensor): ``[H, 9·C]`` frozen hash projection.
        proj_bias (Tensor, optional): ``[H]``; ``None`` means 0.
        mask: per level ``[B, H_l·W_l]`` (bool or float, 1 = keep); ``None`` keeps all.
        with_l2 (bool): add the element-mean MSE of the unfolded features.
        chunk_size (int): locations per chunk.
        checkpoint (bool): recompute each chunk in backward instead of storing it.

    Returns:
        Tensor: scalar fp32 loss (no loss weight applied); 0 (connected to the student
        features) when no location is kept.
    """
    student, teacher, masks = check_dense_inputs(student_feat, teacher_feat, mask,
                                                 proj_weight.shape[-1])
    if int(chunk_size) <= 0:
        raise ValueError(f'dense LSH loss: chunk_size must be positive, got {chunk_size}.')
    fs = unfold_levels(student)  # [B, L, D]
    with torch.no_grad():
        ft = unfold_levels([t.detach() for t in teacher])
    batch, num_locations, dim = fs.shape
    weights = location_weights(masks, batch, num_locations, fs.device).reshape(-1)
    fs, ft = fs.reshape(-1, dim), ft.reshape(-1, dim)

    def chunk_loss(fs_c: Tensor, ft_c: Tensor, w_c: Tensor) -> Tensor:
        # lsh_loss with float weights as mask = Σ w·l / Σ w over the chunk; undo the /Σ w.
        return lsh_loss(fs_c, ft_c, proj_weight, proj_bias, mask=w_c,
                        with_l2=with_l2) * w_c.sum()

    recompute = checkpoint and torch.is_grad_enabled() and fs.requires_grad
    total = fs.new_zeros((), dtype=torch.float32)
    for start in range(0, fs.shape[0], int(chunk_size)):
        rows = slice(start, start + int(chunk_size))
        if recompute:
            term = activation_checkpoint(chunk_loss, fs[rows], ft[rows], weights[rows],
                                         use_reentrant=False)
        else:
            term = chunk_loss(fs[rows], ft[rows], weights[rows])
        total = total + term
    return total


@MODELS.register_module()
class DenseLSHLoss(LSHLoss):
    """LSH / LSHL2 on a dense head's per-location features (LSHFM's RetinaNet loss).

    Wiring (RetinaNet, see ``configs/lsh/``)::

        lsh=dict(
            loss=dict(type='DenseLSHLoss', in_channels=2304, num_hashes=4096,
                      sigma='bbox_head.retina_cls.weight', loss_weight=7.0),
            inputs=dict(student_feat='student.bbox_head.cls_convs.3',
                        teacher_feat='teacher.bbox_head.cls_convs.3',
                        mask='dense.keep_mask'))

    Everything about the projection — frozen ``float32`` buffers ``projection.weight
    [num_hashes, in_channels]`` / ``projection.bias``, seeded draw, ``sigma`` from a
    teacher parameter via :meth:`init_from_teacher`, :meth:`fit_bias` — is
    :class:`LSHLoss`'s; see there.

    Args:
        in_channels (int): ``9 · C`` for ``C``-channel towers (2304 for mmdet's
            RetinaNet, 576 for the CPU-sized 64-channel head).
        num_hashes (int): ``H``. Defaults to 4096, the authors' RetinaNet setting
            (:class:`LSHLoss` defaults to ``4 · in_channels``).
        sigma, bias, with_l2, loss_weight, seed: as :class:`LSHLoss`.
        chunk_size (int): locations per chunk; the loss's working set is about
            ``4 · chunk_size · num_hashes`` fp32 values (256 MiB at the defaults).
            Defaults to 4096.
        checkpoint (bool): recompute each chunk's hash logits in backward rather than
            keep them (~``4 · B·L·H`` fp32 values at the peak otherwise: ~3 GB for two
            1333×800 COCO images). Costs one more pass of the two
            ``[chunk, 9C] × [9C, H]`` products (5 instead of 3). Defaults to True.
    """

    def __init__(self,
                 in_channels: int,
                 num_hashes: Optional[int] = 4096,
                 sigma: Union[float, str] = 1.0,
                 bias: float = 0.0,
                 with_l2: bool = True,
                 loss_weight: float = 1.0,
                 seed: int = 0,
                 chunk_size: int = 4096,
                 checkpoint: bool = True) -> None:
        if int(in_channels) % 9 != 0:
            raise ValueError(
                f'DenseLSHLoss: in_channels={in_channels} is not 9 x the tower channels (a '
                '3x3 unfold); use 9 * feat_channels, e.g. 2304 for 256 channels.')
        if int(chunk_size) <= 0:
            raise ValueError(f'DenseLSHLoss: chunk_size must be positive, got {chunk_size}.')
        super().__init__(in_channels, num_hashes=num_hashes, sigma=sigma, bias=bias,
                         with_l2=with_l2, loss_weight=loss_weight, seed=seed,
                         correct_only=False)
        self.chunk_size = int(chunk_size)
        self.checkpoint = checkpoint

    def forward(self,
                student_feat: Levels,
                teacher_feat: Levels,
                mask: Optional[Levels] = None) -> Tensor:
        """Compute the weighted loss.

        Args:
            student_feat: per level ``[B, C, H_l, W_l]`` student tower outputs.
            teacher_feat: the same for the teacher (no gradient taken).
            mask: per level ``[B, H_l·W_l]`` bool, True = keep (``dense.keep_mask``).

        Returns:
            Tensor: scalar, ``loss_weight · (L_LSH [+ L_L2])``.
        """
        loss = dense_lsh_loss(student_feat, teacher_feat, self.projection.weight,
                              self.projection.bias, mask=mask, with_l2=self.with_l2,
                              chunk_size=self.chunk_size, checkpoint=self.checkpoint)
        return self.loss_weight * loss

    @torch.no_grad()
    def bias_samples(self, teacher_feat: Levels, mask: Optional[Levels] = None,
                     **unused) -> Tensor:
        """The teacher-side rows the hash projection sees in one :meth:`forward` call:
        the unfolded teacher features of the kept locations, ``[M, in_channels]``
        (input dtype). Used by :class:`~mmkd.hooks.LSHBiasInitHook` for :meth:`fit_bias`.
        """
        _, teacher, masks = check_dense_inputs(teacher_feat, teacher_feat, mask,
                                               self.in_channels)
        rows = unfold_levels([t.detach() for t in teacher])
        if masks is None:
            return rows.reshape(-1, rows.shape[-1])
        keep = torch.cat([m.reshape(rows.shape[0], -1) for m in masks], dim=1) > 0
        return rows[keep]

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', chunk_size={self.chunk_size}, '
                f'checkpoint={self.checkpoint}')


__all__ = ['DenseLSHLoss', 'dense_lsh_loss', 'unfold_levels', 'location_weights',
           'check_dense_inputs']
