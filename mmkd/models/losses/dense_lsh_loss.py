"""LSH feature mimicking on a dense head's per-location features (LSHFM for RetinaNet).

"Distilling Knowledge by Mimicking Features" (Wang, Ge, Wu; TPAMI 2022, arXiv 2011.01424),
RetinaNet application: on every FPN level, the output of the 4-conv classification tower
(``[B, C, H_l, W_l]``, after ReLU) is unfolded 3×3 with padding 1, so each location is
described by its ``9·C``-d neighbourhood (2304-d for a 256-channel head); the locations of
all levels are concatenated and the LSH (+ L2) loss of :mod:`.lsh_loss` is applied to them.
Locations whose anchors are all in the assigner's ignore band are dropped (``mask``); the
loss is the mean over the kept locations of each image, then the mean over the images with
at least one kept location.

The value is exactly ``lsh_loss(unfold(f_s), unfold(f_t), W, b, mask)``, but nothing is
unfolded (see :func:`dense_lsh_loss`):

* the hash logits of every 3×3 neighbourhood are a convolution,
  ``unfold(f, 3, padding=1)ᵀ @ Wᵀ + b == conv2d(f, W.view(H, C, 3, 3), b, padding=1)``
  (``F.unfold`` lays a neighbourhood out channel-major, ``(c, dy, dx)``, which is
  ``W.view``'s layout);
* a fused autograd function runs chunks of hash functions through one convolution of the
  student and teacher maps together, takes the teacher bits, accumulates the BCE and
  computes the student's gradient for that chunk on the spot (the input-gradient of the
  same convolution, kept at ``C`` channels): three convolutions' worth of products in all,
  nothing recomputed, memory one chunk of logits plus ``C``-channel maps;
* the L2 term on unfolded vectors is a per-location squared difference weighted by the
  3×3 box sum of the location weights, divided by ``9·C``.
"""
from contextlib import nullcontext
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import MODELS
from .lsh_loss import LSHLoss

Levels = Union[Tensor, Sequence[Tensor]]

#: ``hash_dtype`` values: the precision of the hash projection (the BCE, the weights and
#: every accumulation stay fp32).
HASH_DTYPES = ('fp32', 'tf32', 'bf16')


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


def check_options(logits_per_chunk: int, hash_dtype: str, owner: str) -> None:
    """A one-line ``ValueError`` for a non-positive ``logits_per_chunk`` or an unknown
    ``hash_dtype``."""
    if int(logits_per_chunk) <= 0:
        raise ValueError(f'{owner}: logits_per_chunk must be positive, got {logits_per_chunk}.')
    if hash_dtype not in HASH_DTYPES:
        raise ValueError(f'{owner}: hash_dtype must be one of {HASH_DTYPES}, got '
                         f'{hash_dtype!r}.')


def unfold_levels(feats: Sequence[Tensor]) -> Tensor:
    """3×3 neighbourhoods of every location of every level, concatenated.

    The training path never builds this tensor (see :func:`dense_lsh_loss`); it gives the
    rows :meth:`DenseLSHLoss.bias_samples` hands to the bias fit, and the layout the loss
    is defined on.

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


def box_sum_3x3(weights: Tensor) -> Tensor:
    """``[B, H, W]`` → ``[B, H, W]``: each location's sum over its 3×3 neighbourhood (zero
    outside the map): how often a location's feature appears, weighted, in the kept
    unfolded neighbourhoods."""
    ones = weights.new_ones(1, 1, 3, 3)
    return F.conv2d(weights.unsqueeze(1), ones, padding=1).squeeze(1)


class _ProjectionPrecision:
    """The arithmetic of the hash convolutions for one ``hash_dtype``.

    ``'fp32'``: the compute dtype itself (fp32, or fp64 for fp64 inputs), with TF32
    switched off for these convolutions on CUDA, so that the result equals the unfolded
    matrix product. ``'tf32'``: TF32 tensor cores on CUDA GPUs that have them (plain fp32
    elsewhere). ``'bf16'``: bf16 operands, fp32 accumulation inside the kernel, outputs cast
    back to the compute dtype before anything else uses them.

    Operands are channels-last (NHWC), the layout oneDNN and cuDNN convolve fastest; the
    hash dimension of the logits is then the contiguous one.
    """

    def __init__(self, hash_dtype: str, compute_dtype: torch.dtype,
                 device: torch.device) -> None:
        self.compute_dtype = compute_dtype
        self.operand_dtype = torch.bfloat16 if hash_dtype == 'bf16' else compute_dtype
        self.allow_tf32 = hash_dtype == 'tf32'
        self.cuda = device.type == 'cuda'

    def _flags(self):
        if self.cuda:  # only TF32 changes: the user's other cuDNN settings are kept
            cudnn = torch.backends.cudnn
            return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                               benchmark_limit=cudnn.benchmark_limit,
                               deterministic=cudnn.deterministic,
                               allow_tf32=self.allow_tf32)
        return nullcontext()

    def operand(self, x: Tensor) -> Tensor:
        """``x`` as a convolution operand: operand dtype, channels-last."""
        return x.to(self.operand_dtype).contiguous(memory_format=torch.channels_last)

    def conv(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """Operands ``[N, C, H, W] * [K, C, 3, 3] + [K]`` → ``[N, K, H, W]`` in the operand
        dtype (bf16 logits are rounded once, after the fp32 accumulation)."""
        with self._flags():
            return F.conv2d(x, weight, bias.to(self.operand_dtype), padding=1)

    def conv_input_grad(self, grad_out: Tensor, weight: Tensor) -> Tensor:
        """The gradient of :meth:`conv` w.r.t. its input: ``[N, C, H, W]``, compute dtype."""
        with self._flags():
            return F.conv_transpose2d(grad_out.to(self.operand_dtype), weight,
                                      padding=1).to(self.compute_dtype)


def _hash_bce_level(student: Tensor, teacher: Tensor, weight: Tensor, bias: Tensor,
                    loc_weight: Tensor, logits_per_chunk: int, need_grad: bool,
                    precision: _ProjectionPrecision) -> Tuple[Tensor, Optional[Tensor]]:
    """One level's weighted hash BCE and its student gradient, chunk by chunk.

    Args:
        student, teacher: ``[B, C, h, w]`` (compute dtype: fp32, or fp64).
        weight: ``[H, C, 3, 3]`` hash projection; bias: ``[H]``.
        loc_weight: ``[B, h, w]`` location weights (0 = dropped).
        logits_per_chunk: student logits per chunk (``B·h·w`` × hashes per chunk).
        need_grad: also return ``d loss / d student``.

    Returns:
        ``(Σ_{b,loc} w · mean_h BCE, grad [B, C, h, w] or None)``.
    """
    batch, _, height, width = student.shape
    num_hashes = weight.shape[0]
    per_chunk = max(1, min(num_hashes, logits_per_chunk // max(1, batch * height * width)))
    both = precision.operand(torch.cat([student, teacher]))  # one convolution for the pair
    weight = precision.operand(weight)
    keep = (loc_weight > 0).unsqueeze(1)  # [B, 1, h, w]
    scale = (loc_weight / num_hashes).unsqueeze(1)  # mean over hashes, location weight
    total = student.new_zeros(())
    grad = torch.zeros_like(student) if need_grad else None
    for start in range(0, num_hashes, per_chunk):
        w_chunk = weight[start:start + per_chunk]
        logits = precision.conv(both, w_chunk, bias[start:start + per_chunk])
        # BCE(z, y) = softplus(u), dBCE/dz = sigmoid(u)·sign with sign = 1 − 2y, u = z·sign,
        # y = 1[z_t > 0] (hard teacher bits); computed in place over the chunk's logits
        z_s, z_t = logits[:batch].to(total.dtype), logits[batch:]
        sign = z_t.gt_(0).to(total.dtype).mul_(-2.0).add_(1.0)
        signed = z_s.mul_(sign)
        per_loc = F.softplus(signed).sum(dim=1, keepdim=True)  # [B, 1, h, w]
        # dropped locations are excluded, never multiplied by 0 (inf · 0 = NaN)
        total = total + torch.where(keep, per_loc * scale, per_loc.new_zeros(())).sum()
        if need_grad:
            grad_logits = signed.sigmoid_().mul_(sign.mul_(scale))
            grad += precision.conv_input_grad(grad_logits, w_chunk)
    return total, grad


class _DenseLSHFunction(torch.autograd.Function):
    """Fused dense LSH(+L2): the forward computes the loss and, when the student needs
    it, its gradient; the backward only scales the stored gradient.

    ``apply(weight [H, C, 3, 3], bias [H], with_l2, logits_per_chunk, hash_dtype,
    num_levels, *students, *teachers, *loc_weights)`` with per level ``[B, C, h, w]``
    student / teacher maps and ``[B, h, w]`` location weights, all in the compute dtype
    (fp32, or fp64 for the exactness tests).
    """

    @staticmethod
    def forward(ctx, weight: Tensor, bias: Tensor, with_l2: bool, logits_per_chunk: int,
                hash_dtype: str, num_levels: int, *maps: Tensor) -> Tensor:
        students = maps[:num_levels]
        teachers = maps[num_levels:2 * num_levels]
        loc_weights = maps[2 * num_levels:]
        need_grad = any(ctx.needs_input_grad[6:6 + num_levels])
        precision = _ProjectionPrecision(hash_dtype, students[0].dtype, students[0].device)
        total = students[0].new_zeros(())
        grads: List[Tensor] = []
        for student, teacher, loc_weight in zip(students, teachers, loc_weights):
            bce, grad = _hash_bce_level(student, teacher, weight, bias, loc_weight,
                                        logits_per_chunk, need_grad, precision)
            total = total + bce
            if with_l2:  # Σ_loc w · mean_d (unfold(s) − unfold(t))² without the unfold
                dim = 9 * student.shape[1]
                box = box_sum_3x3(loc_weight).unsqueeze(1)  # [B, 1, h, w]
                covered = box > 0  # in the neighbourhood of a kept location
                diff = torch.where(covered, student - teacher, student.new_zeros(()))
                total = total + (diff.pow(2).sum(dim=1, keepdim=True) * box).sum() / dim
                if need_grad:
                    grad = grad + diff * (box * (2.0 / dim))
            grads.append(grad)
        if need_grad:
            ctx.save_for_backward(*grads)
        ctx.num_levels = num_levels
        ctx.need_grad = need_grad
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor):
        if ctx.need_grad:
            grads = tuple(g * grad_total if needed else None for g, needed in
                          zip(ctx.saved_tensors, ctx.needs_input_grad[6:]))
        else:
            grads = (None, ) * ctx.num_levels
        return (None, ) * 6 + grads + (None, ) * (2 * ctx.num_levels)


def dense_lsh_loss(student_feat: Levels,
                   teacher_feat: Levels,
                   proj_weight: Tensor,
                   proj_bias: Optional[Tensor] = None,
                   mask: Optional[Levels] = None,
                   with_l2: bool = True,
                   logits_per_chunk: int = 2**22,
                   hash_dtype: str = 'fp32') -> Tensor:
    """LSH (+ L2) loss on 3×3-unfolded dense features, without the unfold.

    Equal to ``lsh_loss(unfold(f_s), unfold(f_t), W, b, mask=keep)`` on the ``[B, L, 9C]``
    layout (per-image mean over kept locations, then mean over images with one or more;
    :func:`location_weights`), computed as convolutions (module docstring):

    * per level and chunk of hash functions, one ``conv2d`` of the student and teacher maps
      together gives both logits; teacher bits ``z_t > 0``; the BCE is accumulated and the
      student's gradient for the chunk, ``conv_transpose2d((σ(z_s) − y)·w/H, W_chunk)``,
      added to a ``[B, C, h, w]`` buffer;
    * the L2 term is ``Σ_loc ‖f_s − f_t‖²_loc · box3x3(w)_loc / 9C``.

    Compute: the products of three ``[B·L, 9C] × [9C, H]`` matrix products (student and
    teacher logits, one input gradient), nothing recomputed. Dropped locations' terms are
    excluded with ``torch.where`` (their gradient is exactly 0); the convolutions still run
    over whole maps, which is cheaper than gathering the kept neighbourhoods.

    Memory: one chunk's logits (``≤ logits_per_chunk`` student logits, as many teacher
    ones, and ~3 same-size temporaries, fp32) plus ``C``-channel maps: the fp32 copies of
    the inputs and the stored gradient, ``B·L·C`` elements each. Full size (RetinaNet,
    2 images of 1333×800, ``B·L`` ≈ 44.8k, ``C`` = 256, ``H`` = 4096): ≈ 0.05 GB of maps and
    ≈ 0.1 GB per chunk at the default.

    Args:
        student_feat: per level ``[B, C, H_l, W_l]`` (a tuple, or one tensor).
        teacher_feat: same shapes; no gradient is taken.
        proj_weight (Tensor): ``[H, 9·C]`` frozen hash projection.
        proj_bias (Tensor, optional): ``[H]``; ``None`` means 0.
        mask: per level ``[B, H_l·W_l]`` (bool or float, 1 = keep); ``None`` keeps all.
        with_l2 (bool): add the element-mean MSE of the unfolded features.
        logits_per_chunk (int): student hash logits per chunk (locations × hashes);
            bounds the working set. Defaults to 2**22 (16 MiB of fp32).
        hash_dtype (str): precision of the projection, one of :data:`HASH_DTYPES`
            (``'fp32'`` exact; ``'tf32'`` on CUDA GPUs with TF32; ``'bf16'`` operands with
            fp32 accumulation). The BCE, the L2 term and all sums are fp32 in every case.

    Returns:
        Tensor: scalar fp32 loss (fp64 for fp64 inputs; no loss weight applied); 0
        (connected to the student features) when no location is kept.
    """
    student, teacher, masks = check_dense_inputs(student_feat, teacher_feat, mask,
                                                 proj_weight.shape[-1])
    check_options(logits_per_chunk, hash_dtype, 'dense LSH loss')
    batch, channels = student[0].shape[:2]
    sizes = [s.shape[2] * s.shape[3] for s in student]
    # fp32 at least (the BCE of fp16 logits overflows); fp64 inputs stay fp64
    compute = torch.float64 if student[0].dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=student[0].device.type, enabled=False):
        weights = location_weights(masks, batch, sum(sizes), student[0].device).to(compute)
        loc_weights = [w.reshape(batch, s.shape[2], s.shape[3]) for w, s in
                       zip(weights.split(sizes, dim=1), student)]
        conv_weight = proj_weight.detach().to(compute).reshape(-1, channels, 3, 3)
        bias = conv_weight.new_zeros(conv_weight.shape[0]) if proj_bias is None else \
            proj_bias.detach().to(compute)
        return _DenseLSHFunction.apply(
            conv_weight, bias, with_l2, int(logits_per_chunk), hash_dtype, len(student),
            *[s.to(compute) for s in student], *[t.detach().to(compute) for t in teacher],
            *loc_weights)


@torch.no_grad()
def bf16_bit_flips(teacher_feat: Levels, proj_weight: Tensor,
                   proj_bias: Optional[Tensor] = None,
                   mask: Optional[Levels] = None) -> Tuple[Tensor, Tensor]:
    """How many teacher hash bits ``hash_dtype='bf16'`` changes (a measurement, not part
    of training; :mod:`mmkd.apis.precision_report`).

    Args:
        teacher_feat: per level ``[B, C, H_l, W_l]``; proj_weight ``[H, 9·C]``;
            proj_bias ``[H]`` or None; mask: per level ``[B, H_l·W_l]`` or None.

    Returns:
        ``(flipped, total)``: scalar counts of bits over the kept locations whose fp32 and
        bf16 projections disagree on the sign, and of all such bits.
    """
    teacher, _, masks = check_dense_inputs(teacher_feat, teacher_feat, mask,
                                           proj_weight.shape[-1])
    channels = teacher[0].shape[1]
    weight = proj_weight.float().reshape(-1, channels, 3, 3)
    bias = weight.new_zeros(weight.shape[0]) if proj_bias is None else proj_bias.float()
    exact = _ProjectionPrecision('fp32', torch.float32, weight.device)
    low = _ProjectionPrecision('bf16', torch.float32, weight.device)
    flipped = weight.new_zeros(())
    total = weight.new_zeros(())
    for level, feat in enumerate(teacher):
        keep = torch.ones(feat.shape[0], feat.shape[2] * feat.shape[3], dtype=torch.bool,
                          device=feat.device) if masks is None else masks[level] > 0
        keep = keep.view(feat.shape[0], 1, feat.shape[2], feat.shape[3])
        bits32 = exact.conv(exact.operand(feat.float()), exact.operand(weight), bias) > 0
        bits16 = low.conv(low.operand(feat.float()), low.operand(weight), bias) > 0
        flipped += ((bits32 != bits16) & keep).sum()
        total += keep.sum() * weight.shape[0]
    return flipped, total


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
    :class:`LSHLoss`'s; see there. The computation is :func:`dense_lsh_loss`'s.

    Args:
        in_channels (int): ``9 · C`` for ``C``-channel towers (2304 for mmdet's
            RetinaNet, 576 for the CPU-sized 64-channel head).
        num_hashes (int): ``H``. Defaults to 4096, the authors' RetinaNet setting
            (:class:`LSHLoss` defaults to ``4 · in_channels``).
        sigma, bias, with_l2, loss_weight, seed: as :class:`LSHLoss`.
        logits_per_chunk (int): student hash logits per chunk; the loss's working set is
            about ``6 · logits_per_chunk`` fp32 values (96 MiB at the default 2**22).
        hash_dtype (str): ``'fp32'`` (default, exact), ``'tf32'`` (CUDA GPUs with TF32)
            or ``'bf16'``: the precision of the hash projection only (see
            :func:`dense_lsh_loss`); teacher bits whose logit is within rounding of 0 may
            flip (``docs/benchmark.md`` gives the measured fraction).
    """

    def __init__(self,
                 in_channels: int,
                 num_hashes: Optional[int] = 4096,
                 sigma: Union[float, str] = 1.0,
                 bias: float = 0.0,
                 with_l2: bool = True,
                 loss_weight: float = 1.0,
                 seed: int = 0,
                 logits_per_chunk: int = 2**22,
                 hash_dtype: str = 'fp32') -> None:
        if int(in_channels) % 9 != 0:
            raise ValueError(
                f'DenseLSHLoss: in_channels={in_channels} is not 9 x the tower channels (a '
                '3x3 unfold); use 9 * feat_channels, e.g. 2304 for 256 channels.')
        check_options(logits_per_chunk, hash_dtype, 'DenseLSHLoss')
        super().__init__(in_channels, num_hashes=num_hashes, sigma=sigma, bias=bias,
                         with_l2=with_l2, loss_weight=loss_weight, seed=seed,
                         correct_only=False)
        self.logits_per_chunk = int(logits_per_chunk)
        self.hash_dtype = hash_dtype

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
                              logits_per_chunk=self.logits_per_chunk,
                              hash_dtype=self.hash_dtype)
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
        return (super().extra_repr() + f', logits_per_chunk={self.logits_per_chunk}, '
                f'hash_dtype={self.hash_dtype!r}')


__all__ = ['DenseLSHLoss', 'dense_lsh_loss', 'unfold_levels', 'location_weights',
           'check_dense_inputs', 'box_sum_3x3', 'bf16_bit_flips', 'HASH_DTYPES']
