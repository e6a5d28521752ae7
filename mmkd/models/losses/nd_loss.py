"""ND (norm and direction) loss.

"Improving Knowledge Distillation via Regularizing Feature Norm and Direction" (Wang et
al.; arXiv 2305.17007, ECCV 2024).

The student embedding is pulled towards the direction of the teacher's class mean
``ĉ_y = c_y / ‖c_y‖`` and, while its norm is below the teacher's, towards a larger norm:
``1 - <s, ĉ_y> / max(‖s‖, ‖t‖)`` with ``s`` not normalised in the numerator.

* :class:`NDLoss`: on ``[N, D]`` embeddings with labels (the paper; for Faster R-CNN the
  RoI classifier input of the student's sampled RoIs, background included).
* :class:`DenseNDLoss`: mmkd's own extension to dense heads (RetinaNet), no published
  counterpart: the samples are the positive anchors, each contributing the cls-tower
  feature of its location, grouped by the anchor's assigned class.

The class means come from ``tools/class_means.py`` (a file read by
:func:`mmkd.utils.load_class_means`). Given a path together with ``num_classes`` and
``in_channels``, the loss builds with an all-zero table and reads the file in
:meth:`NDLoss.init_from_teacher` — i.e. when training starts, after the teacher checkpoint
is loaded — so a distillation config builds (``tools/test.py``, ``tools/class_means.py``)
before the file exists; on resume the table comes back from the checkpoint.
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from mmkd.registry import MODELS


def _projector_hint(ds: int, dt: int) -> str:
    return (f"add the ND projector on the student side, e.g. connectors=dict(student_emb="
            f"dict(type='NDProjector', in_channels={ds}, out_channels={dt}))")


def nd_loss(student_emb: Tensor, teacher_emb: Tensor, labels: Tensor,
            normalized_means: Tensor) -> Tensor:
    """Mean ND loss over samples, computed in fp32.

    ``mean_i [1 - <s_i, ĉ_{y_i}> / max(‖s_i‖, ‖t_i‖)]``; ``‖t_i‖`` is a constant. An
    empty batch gives 0 (connected to ``student_emb`` for autograd, never NaN).

    Args:
        student_emb (Tensor): ``[N, D]`` student embeddings.
        teacher_emb (Tensor): ``[N, D]`` teacher embeddings (detached here).
        labels (Tensor): ``[N]`` integer labels in ``[0, C)``. Not range-checked on the
            device (that would sync); an out-of-range label raises an ``IndexError`` on CPU
            and a device-side assert on CUDA.
        normalized_means (Tensor): ``[C, D]`` unit-norm (or all-zero) class means.

    Returns:
        Tensor: scalar fp32 loss (not multiplied by any loss weight).
    """
    if student_emb.dim() != 2 or student_emb.shape != teacher_emb.shape:
        raise ValueError(
            f'ND loss: student_emb and teacher_emb must both be [N, D], got '
            f'{tuple(student_emb.shape)} and {tuple(teacher_emb.shape)}.')
    if normalized_means.dim() != 2 or normalized_means.shape[1] != student_emb.shape[1]:
        raise ValueError(
            f'ND loss: embeddings have D={student_emb.shape[1]} but the class means are '
            f'{tuple(normalized_means.shape)}; '
            f'{_projector_hint(student_emb.shape[1], normalized_means.shape[-1])}.')
    if labels.shape != student_emb.shape[:1]:
        raise ValueError(f'ND loss: labels must be [N]={tuple(student_emb.shape[:1])}, got '
                         f'{tuple(labels.shape)}.')
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f'ND loss: labels must be an integer tensor (class indices), got '
                         f'{labels.dtype}.')

    with torch.autocast(device_type=student_emb.device.type, enabled=False):
        s = student_emb.float()
        t_norm = teacher_emb.detach().float().norm(dim=1)  # [N], constant
        means = normalized_means.detach().float()
        # index_select rejects negative indices (plain indexing would wrap around).
        try:
            c = torch.index_select(means, 0, labels.long())  # [N, D]
        except IndexError as err:  # CPU only; CUDA reports a device-side assert instead
            raise IndexError(
                f'ND loss: labels must be in [0, {means.shape[0]}) (one row of class means '
                f'per label value; mmdet background = num_classes needs a background '
                f'row): {err}') from err
        denom = torch.maximum(s.norm(dim=1), t_norm).clamp(min=1e-12)
        per_sample = 1.0 - (s * c).sum(dim=1) / denom
        return per_sample.sum() / max(per_sample.shape[0], 1)


def dense_nd_loss(student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor],
                  anchor_labels: Sequence[Tensor], normalized_means: Tensor) -> Tensor:
    """ND loss over the positive anchors of a dense head, computed in fp32.

    Each positive anchor (label in ``[0, K)``, ``K`` = rows of ``normalized_means``) is a
    sample: its location's student / teacher feature and its assigned label. Anchors with
    a label ``>= K`` (mmdet's background / ignored value ``num_classes``) or ``< 0`` are
    left out. The loss is ``mean over positives [1 - <s, ĉ_y> / max(‖s‖, ‖t‖)]``, over all
    levels together (a location with several positive anchors counts once per anchor).
    Vectorised, without a host sync: the per-location dot products with all ``K`` means
    are gathered by label and masked. No positive anchor in the batch gives 0 (connected
    to the student features for autograd).

    Args:
        student_feats (Sequence[Tensor]): per level ``[B, D, H_l, W_l]`` (e.g. the output
            of RetinaNet's last cls-tower conv, after ReLU).
        teacher_feats (Sequence[Tensor]): per level ``[B, D, H_l, W_l]`` (detached here).
        anchor_labels (Sequence[Tensor]): per level ``[B, H_l · W_l · A]`` integer labels
            in mmdet's anchor order (location-major, ``A`` anchors per location), e.g.
            the ``dense.labels`` source.
        normalized_means (Tensor): ``[K, D]`` unit-norm (or all-zero) foreground class
            means.

    Returns:
        Tensor: scalar fp32 loss (not multiplied by any loss weight).
    """
    if not (len(student_feats) == len(teacher_feats) == len(anchor_labels)) or \
            not len(student_feats):
        raise ValueError(
            f'dense ND loss: needs the same (non-zero) number of levels for the student '
            f'features, teacher features and anchor labels, got {len(student_feats)}, '
            f'{len(teacher_feats)} and {len(anchor_labels)}.')
    num_fg, dim = normalized_means.shape
    device = student_feats[0].device
    with torch.autocast(device_type=device.type, enabled=False):
        means = normalized_means.detach().float()
        total = student_feats[0].new_zeros((), dtype=torch.float32)
        count = torch.zeros((), dtype=torch.float32, device=device)
        for level, (s, t, labels) in enumerate(zip(student_feats, teacher_feats,
                                                   anchor_labels)):
            if s.dim() != 4 or s.shape != t.shape or s.shape[1] != dim:
                raise ValueError(
                    f'dense ND loss: level {level}: student and teacher features must both '
                    f'be [B, {dim}, H, W] (D of the class means), got {tuple(s.shape)} and '
                    f'{tuple(t.shape)}; the student and teacher towers need the same width.')
            b, _, h, w = s.shape
            if labels.dim() != 2 or labels.shape[0] != b or labels.shape[1] % (h * w):
                raise ValueError(
                    f'dense ND loss: level {level}: anchor labels must be [B, H·W·A] = '
                    f'[{b}, {h * w}·A], got {tuple(labels.shape)}.')
            if labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise ValueError(f'dense ND loss: anchor labels must be integer class '
                                 f'indices, got {labels.dtype}.')
            labels = labels.long().view(b, h * w, -1)  # [B, HW, A]
            s = s.float().permute(0, 2, 3, 1).reshape(b, h * w, dim)  # [B, HW, D]
            t_norm = t.detach().float().norm(dim=1).reshape(b, h * w)  # [B, HW]
            positive = (labels >= 0) & (labels < num_fg)  # [B, HW, A]
            dots = torch.matmul(s, means.t())  # [B, HW, K]
            dot = dots.gather(2, labels.clamp(0, num_fg - 1))  # [B, HW, A]
            denom = torch.maximum(s.norm(dim=2), t_norm).clamp(min=1e-12)  # [B, HW]
            per_anchor = 1.0 - dot / denom.unsqueeze(-1)
            total = total + (per_anchor * positive).sum()
            count = count + positive.sum()
        return total / count.clamp(min=1)


def _load_checked_means(path: str, num_classes: Optional[int],
                        in_channels: Optional[int]) -> Tuple[Tensor, dict]:
    """Read a class-means file and check its shape against the expected one."""
    from mmkd.utils.class_means import load_class_means  # no mmkd.utils deps at import
    means, _, meta = load_class_means(path)
    return _checked(means, f"class-means file '{path}'", num_classes, in_channels,
                    meta), meta


def _checked(means: Tensor, source: str, num_classes: Optional[int],
             in_channels: Optional[int], meta: Optional[dict] = None) -> Tensor:
    """``means`` as float32 CPU ``[C, D]``, or a ValueError naming both shapes."""
    meta = meta or {}
    means = means.detach().float().cpu()
    if means.dim() != 2:
        raise ValueError(f'NDLoss: {source} must be [C, D], found {tuple(means.shape)}.')
    num_rows, dim = means.shape
    if (num_classes is not None and num_rows != num_classes) or (
            in_channels is not None and dim != in_channels):
        expected = (num_classes if num_classes is not None else num_rows,
                    in_channels if in_channels is not None else dim)
        bg = ''
        if meta.get('includes_background') and num_classes is not None \
                and num_rows == num_classes + 1:
            bg = (f' (the file includes a background row: for mmdet RoI labels set '
                  f'num_classes={num_rows})')
        raise ValueError(
            f'NDLoss: {source} holds means of shape {tuple(means.shape)} but '
            f'(num_classes, in_channels) = {expected} was expected{bg}; regenerate it '
            f'with tools/class_means.py for this teacher/dataset, or fix the config.')
    return means


@MODELS.register_module()
class NDLoss(nn.Module):
    """ND loss against frozen, normalised teacher class means.

    The means are kept as the float32 buffer ``normalized_means [C, D]`` (saved in and
    restored from the state dict, never trained). Rows of classes without samples (all
    zero) stay zero; such samples contribute a constant 1 and no gradient.

    Where the means come from:

    * a tensor: used at once;
    * a file path with ``num_classes`` and ``in_channels``: the buffer is built as zeros
      ``[num_classes, in_channels]`` and the file is read (and its shape checked) by
      :meth:`init_from_teacher`, which the distiller calls when training starts, after
      loading the teacher checkpoint — never at test time, so ``tools/test.py`` and
      ``tools/class_means.py`` build the config before the file exists. On ``--resume``
      the runner loads the checkpoint after that, so the run continues with the
      checkpoint's table. Computing the loss before the means are loaded (from the file or
      a state dict) is an error, not a silent constant;
    * a file path alone: read at build (shapes taken from the file).

    Args:
        class_means (Tensor | str): ``[C, D]`` class means, or the path of a file written by
            :func:`mmkd.utils.save_class_means` (``tools/class_means.py``).
        num_classes (int, optional): expected number of rows ``C``, i.e. of label values.
            For mmdet RoI labels, which use ``num_classes`` for background, that is the
            dataset's ``num_classes + 1``. Checked when given.
        in_channels (int, optional): expected ``D`` (the teacher embedding width). Checked
            when given.
        loss_weight (float): ND weight ``w``. Defaults to 1.0.
    """

    def __init__(self,
                 class_means: Union[Tensor, str],
                 num_classes: Optional[int] = None,
                 in_channels: Optional[int] = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.class_means_path: Optional[str] = None
        meta: dict = {}
        if isinstance(class_means, str):
            self.class_means_path = class_means
            if num_classes is not None and in_channels is not None:
                means = torch.zeros(int(num_classes), int(in_channels))  # read at train start
                self._means_ready = False
            else:
                means, meta = _load_checked_means(class_means, num_classes, in_channels)
                self._means_ready = True
        elif isinstance(class_means, Tensor):
            means = _checked(class_means, 'class_means tensor', num_classes, in_channels)
            self._means_ready = True
        else:
            raise ValueError(f'NDLoss: class_means must be a [C, D] tensor or a file path, '
                             f'got {type(class_means).__name__}.')
        self._check_meta(meta)
        self.register_buffer('normalized_means', self._normalize(means))
        self.num_classes, self.in_channels = means.shape
        self.loss_weight = loss_weight

    @staticmethod
    def _normalize(means: Tensor) -> Tensor:
        norms = means.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return (means / norms).contiguous()

    def _check_meta(self, meta: dict, source: str = 'the class means') -> None:
        """Hook for subclasses to refuse files made for another use."""

    @torch.no_grad()
    def init_from_teacher(self, teacher: Optional[nn.Module] = None) -> None:
        """Read the class-means file (when ``class_means`` was a path) into the buffer.

        Called by the distiller when training starts, after the teacher checkpoint is
        loaded. Idempotent; a no-op when ``class_means`` was a tensor.

        Args:
            teacher (nn.Module, optional): the loaded teacher (unused: the means are
                precomputed by ``tools/class_means.py``).

        Raises:
            FileNotFoundError: the file does not exist (run ``tools/class_means.py``).
            ValueError: the file's ``[C, D]`` is not ``(num_classes, in_channels)``.
        """
        path = self.class_means_path
        if path is None:
            return
        if not osp.isfile(path):
            raise FileNotFoundError(
                f"NDLoss: class-means file '{path}' not found (cwd {os.getcwd()}). Compute "
                f'the teacher\'s class means first: python tools/class_means.py CONFIG '
                f'--out {path}  (CONFIG: this distillation config; it runs the frozen '
                f'teacher over the training set), then start training.')
        means, meta = _load_checked_means(path, self.num_classes, self.in_channels)
        self._check_meta(meta, path)
        self.normalized_means.copy_(self._normalize(means).to(self.normalized_means))
        self._means_ready = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + 'normalized_means' in state_dict:
            self._means_ready = True  # e.g. a checkpoint (resume, or a test-time load)

    def _check_ready(self) -> None:
        if not self._means_ready:
            raise RuntimeError(
                f"{type(self).__name__}: the class means of '{self.class_means_path}' are "
                f'not loaded yet; call init_from_teacher() (the distiller does when '
                f'training starts) or load a checkpoint holding normalized_means.')

    def forward(self, student_emb: Tensor, teacher_emb: Tensor, labels: Tensor) -> Tensor:
        """Compute the weighted loss.

        Args:
            student_emb (Tensor): ``[N, D]`` student embeddings (after the ND projector
                if the widths differ).
            teacher_emb (Tensor): ``[N, D]`` teacher embeddings.
            labels (Tensor): ``[N]`` long labels in ``[0, C)`` (not range-checked on the
                device; see :func:`nd_loss`).

        Returns:
            Tensor: scalar loss ``loss_weight * mean_i[1 - <s_i, ĉ_yi> / max(‖s_i‖, ‖t_i‖)]``.
        """
        self._check_ready()
        if student_emb.dim() == 2 and student_emb.shape[1] != self.in_channels:
            raise ValueError(
                f'NDLoss: student_emb has D={student_emb.shape[1]} but the class means have '
                f'D={self.in_channels}; '
                f'{_projector_hint(student_emb.shape[1], self.in_channels)}.')
        return self.loss_weight * nd_loss(student_emb, teacher_emb, labels,
                                          self.normalized_means)

    def extra_repr(self) -> str:
        source = f"class_means='{self.class_means_path}', " if self.class_means_path else ''
        return (f'{source}num_classes={self.num_classes}, in_channels={self.in_channels}, '
                f'loss_weight={self.loss_weight}')


@MODELS.register_module()
class DenseNDLoss(NDLoss):
    """ND on a dense head (mmkd's extension; the ND paper has no dense-detector version).

    Samples are the positive anchors of the batch (assigned by the head's own assigner,
    the ``dense.labels`` source); each takes the student / teacher feature of its
    location (e.g. RetinaNet's cls tower, ``bbox_head.cls_convs.3``, after ReLU) and its
    assigned class. The class means have one row per foreground class (no background
    row: the ~10⁵ negative locations per image are left alone) and are computed over the
    positive anchors of the training set by ``tools/class_means.py``. See
    :func:`dense_nd_loss`. Arguments as :class:`NDLoss`, with ``num_classes`` the number
    of foreground classes.
    """

    def _check_meta(self, meta: dict, source: str = 'the class means') -> None:
        if meta.get('includes_background'):
            raise ValueError(
                f'DenseNDLoss: {source} includes a background row (it was computed for '
                f'RoI labels); dense ND uses foreground classes only: regenerate it with '
                f'tools/class_means.py for this (dense) config.')

    def forward(self, student_feats: Union[Tensor, Sequence[Tensor]],
                teacher_feats: Union[Tensor, Sequence[Tensor]],
                anchor_labels: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        """Compute the weighted loss.

        Args:
            student_feats: ``[B, D, H_l, W_l]`` per level (a tuple, or one tensor).
            teacher_feats: same shapes as ``student_feats``.
            anchor_labels: ``[B, H_l · W_l · A]`` per level (the ``dense.labels`` source).

        Returns:
            Tensor: scalar ``loss_weight ·`` :func:`dense_nd_loss`.
        """
        self._check_ready()
        as_tuple = lambda x: (x, ) if isinstance(x, Tensor) else tuple(x)  # noqa: E731
        return self.loss_weight * dense_nd_loss(
            as_tuple(student_feats), as_tuple(teacher_feats), as_tuple(anchor_labels),
            self.normalized_means)
