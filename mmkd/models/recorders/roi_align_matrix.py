"""RoIAlign over FPN levels as one sparse matrix, for RoI-head passes that need a gradient.

mmcv's RoIAlign (average pooling) is linear in the feature maps: each output bin is a
fixed weighted sum of input pixels, the weights given by the RoI alone (bilinear
interpolation at ``grid_h × grid_w`` sampling points per bin, divided by their number).
:func:`roi_align_matrix` builds that map once for a set of RoIs, each on its FPN level,
as a CSR matrix ``A`` of shape ``[R · PH · PW, Σ_l B · H_l · W_l]``; then

* forward: ``A @ X``, with ``X`` the levels flattened channel-last and stacked
  (``[Σ_l B·H_l·W_l, C]``), for any number of channels: several feature sets on the same
  RoIs (FCFD's two cross-network passes) are one product over their concatenated
  channels;
* backward: ``Aᵀ @ grad``, with ``Aᵀ`` built only when a gradient is asked for.

On CPU this is several times faster than mmcv's kernels (single-threaded loops, the
backward recomputing the sampling geometry for every channel). The weights are computed
exactly as mmcv's CPU / CUDA kernels compute them (same sampling points, clamping,
``aligned`` offset, adaptive grid ``ceil(roi_size / output_size)``), so the result is
mmcv's up to summation order (float64: ~1e-15 relative; tested).
"""
import warnings
from typing import List, Sequence, Tuple

import torch
from torch import Tensor


def roi_align_matrix(rois: Tensor,
                     levels: Tensor,
                     level_shapes: Sequence[Tuple[int, int]],
                     spatial_scales: Sequence[float],
                     batch_size: int,
                     output_size: Tuple[int, int],
                     sampling_ratio: int = 0,
                     aligned: bool = True) -> Tuple[Tensor, Tensor, Tensor, Tuple[int, int]]:
    """The sparse RoIAlign map of ``rois`` (see the module docstring).

    Args:
        rois (Tensor): ``[R, 5]`` ``(batch_idx, x1, y1, x2, y2)`` in input pixels; its
            dtype is the dtype of the weights (as mmcv computes in the feature dtype;
            fp32 for half / bfloat16 features).
        levels (Tensor): ``[R]`` long, the FPN level of each RoI.
        level_shapes: ``(H_l, W_l)`` of each level.
        spatial_scales: ``1 / stride`` of each level.
        batch_size (int): B of the feature maps.
        output_size: ``(PH, PW)``.
        sampling_ratio (int): samples per bin side; 0 = adaptive ``ceil(roi / output)``.
        aligned (bool): mmcv's ``aligned`` (half-pixel offset).

    Returns:
        tuple: ``(rows, cols, weights, shape)`` of the matrix in COO form with rows
        non-decreasing (CSR order), ``shape = (R · PH · PW, Σ_l B · H_l · W_l)``.
    """
    dtype, device = rois.dtype, rois.device
    ph_, pw_ = output_size
    num_rois = rois.size(0)
    heights = torch.tensor([h for h, _ in level_shapes], device=device)
    widths = torch.tensor([w for _, w in level_shapes], device=device)
    sizes = heights * widths * batch_size
    starts = torch.cumsum(sizes, 0) - sizes
    # mmcv receives the scale as a Python float and casts it to the feature dtype
    scale = torch.tensor([float(s) for s in spatial_scales], dtype=dtype,
                         device=device)[levels]
    height, width = heights[levels], widths[levels]
    base = starts[levels] + rois[:, 0].long() * height * width

    offset = 0.5 if aligned else 0.0
    start_w = rois[:, 1] * scale - offset
    start_h = rois[:, 2] * scale - offset
    roi_w = rois[:, 3] * scale - offset - start_w
    roi_h = rois[:, 4] * scale - offset - start_h
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / ph_, roi_w / pw_
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois, ), sampling_ratio, dtype=torch.long, device=device)
        grid_w = grid_h
    else:  # ceilf(roi_size / pooled_size), in float32 as the kernels do
        grid_h = torch.ceil((roi_h / ph_).float()).long().clamp(min=0)
        grid_w = torch.ceil((roi_w / pw_).float()).long().clamp(min=0)
    count = (grid_h * grid_w).clamp(min=1).to(dtype)

    # one entry per sampling point: roi n, bin (ph, pw), point (iy, ix), in that order
    per_roi = ph_ * pw_ * grid_h * grid_w
    roi = torch.repeat_interleave(torch.arange(num_rois, device=device), per_roi)
    k = torch.arange(roi.numel(), device=device) - (torch.cumsum(per_roi, 0) - per_roi)[roi]
    gh, gw = grid_h[roi], grid_w[roi]
    ix = k % gw
    iy = (k // gw) % gh
    pw = (k // (gw * gh)) % pw_
    ph = k // (gw * gh * pw_)
    # the kernels' expression, in the same order:
    # start + p * bin_size + (i + .5) * bin_size / grid
    y = start_h[roi] + ph.to(dtype) * bin_h[roi] + (iy.to(dtype) + 0.5) * bin_h[roi] / gh.to(dtype)
    x = start_w[roi] + pw.to(dtype) * bin_w[roi] + (ix.to(dtype) + 0.5) * bin_w[roi] / gw.to(dtype)
    h, w = height[roi], width[roi]
    empty = (y < -1.0) | (y > h) | (x < -1.0) | (x > w)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low, x_low = y.long(), x.long()  # y, x >= 0: truncation = floor
    y_edge, x_edge = y_low >= h - 1, x_low >= w - 1
    y_low = torch.where(y_edge, h - 1, y_low)
    x_low = torch.where(x_edge, w - 1, x_low)
    y = torch.where(y_edge, y_low.to(dtype), y)
    x = torch.where(x_edge, x_low.to(dtype), x)
    y_high = torch.where(y_edge, y_low, y_low + 1)
    x_high = torch.where(x_edge, x_low, x_low + 1)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1. - ly, 1. - lx
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], 1)
    weights = torch.where(empty[:, None], 0., weights) / count[roi][:, None]
    b = base[roi]
    cols = torch.stack([b + y_low * w + x_low, b + y_low * w + x_high,
                        b + y_high * w + x_low, b + y_high * w + x_high], 1)
    cols = torch.where(empty[:, None], b[:, None], cols)
    rows = (roi * (ph_ * pw_) + ph * pw_ + pw)[:, None].expand(-1, 4)
    shape = (num_rois * ph_ * pw_, int(sizes.sum()))
    return rows.reshape(-1), cols.reshape(-1), weights.reshape(-1), shape


def _csr(rows: Tensor, cols: Tensor, values: Tensor, shape: Tuple[int, int]) -> Tensor:
    """CSR matrix from COO entries whose ``rows`` are non-decreasing."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.filterwarnings('ignore', message='Sparse CSR tensor support')
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half / bfloat16 (no sparse kernels; mmcv's RoIAlign computes them in fp32
    too), else the dtype itself."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class _SparseRoIAlign(torch.autograd.Function):
    """``A @ X`` with ``A`` given as sorted COO entries; gradient for ``X`` only. Half /
    bfloat16 ``X`` is computed in fp32 (outside any autocast) and returned in its dtype."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor, cols: Tensor, weights: Tensor,
                shape: Tuple[int, int]) -> Tensor:
        ctx.save_for_backward(rows, cols, weights)
        ctx.shape, ctx.dtype = shape, x.dtype
        dtype = _compute_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            out = _csr(rows, cols, weights.to(dtype), shape) @ x.to(dtype)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        rows, cols, weights = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        dtype = _compute_dtype(ctx.dtype)
        order = torch.argsort(cols, stable=True)
        with torch.autocast(grad.device.type, enabled=False):
            transposed = _csr(cols[order], rows[order], weights[order].to(dtype),
                              (ctx.shape[1], ctx.shape[0]))
            grad_x = transposed @ grad.to(dtype).contiguous()
        return grad_x.to(ctx.dtype), None, None, None, None


def sparse_roi_align(feature_sets: Sequence[Sequence[Tensor]],
                     rois: Tensor,
                     levels: Tensor,
                     spatial_scales: Sequence[float],
                     output_size: Tuple[int, int],
                     sampling_ratio: int = 0,
                     aligned: bool = True) -> List[Tensor]:
    """mmcv's multi-level RoIAlign (average pooling) of several feature sets on the same
    RoIs, in one sparse product.

    Args:
        feature_sets: each a sequence of levels ``[B, C_k, H_l, W_l]`` (same ``B``,
            ``H_l``, ``W_l`` and dtype in every set; channels may differ).
        rois (Tensor): ``[R, 5]``.
        levels (Tensor): ``[R]`` the level of each RoI (mmdet's ``map_roi_levels``).
        spatial_scales, output_size, sampling_ratio, aligned: of the RoIAlign layers.

    Returns:
        list: per feature set ``[R, C_k, PH, PW]``; gradients flow to every level of
        every set (zero where no RoI reads).
    """
    first = feature_sets[0]
    dtype = first[0].dtype
    level_shapes = [tuple(f.shape[-2:]) for f in first]
    for feats in feature_sets:
        if [tuple(f.shape[-2:]) for f in feats] != level_shapes or \
                any(f.size(0) != first[0].size(0) or f.dtype != dtype for f in feats):
            raise ValueError('sparse_roi_align: every feature set needs the same levels '
                             f'(batch, sizes, dtype); got {[tuple(f.shape) for f in feats]} '
                             f'and {[tuple(f.shape) for f in first]}')
    channels = [feats[0].size(1) for feats in feature_sets]
    # [Σ_l B·H_l·W_l, Σ_k C_k]: levels flattened channel-last, sets side by side
    x = torch.cat([
        torch.cat([feats[level].permute(0, 2, 3, 1) for feats in feature_sets], 3)
        .view(-1, sum(channels)) for level in range(len(level_shapes))
    ], 0)
    rows, cols, weights, shape = roi_align_matrix(
        rois.to(_compute_dtype(dtype)), levels, level_shapes, spatial_scales,
        first[0].size(0), output_size, sampling_ratio, aligned)
    out = _SparseRoIAlign.apply(x, rows, cols, weights, shape)  # [R·PH·PW, ΣC]
    out = out.view(rois.size(0), output_size[0] * output_size[1], -1)
    # split (its backward is one concatenation, not a zero-filled copy per set)
    return [part.transpose(1, 2).reshape(rois.size(0), part.size(-1), *output_size)
            for part in torch.split(out, channels, dim=2)]
