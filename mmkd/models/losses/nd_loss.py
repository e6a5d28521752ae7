"""ND (norm and direction) loss.

"Improving Knowledge Distillation via Regularizing Feature Norm and Direction" (Wang et
al.; arXiv 2305.17007, ECCV 2024).

The student embedding is pulled towards the direction of the teacher's class mean
``ĉ_y = c_y / ‖c_y‖`` and, while its norm is below the teacher's, towards a larger norm:
``1 - <s, ĉ_y> / max(‖s‖, ‖t‖)`` with ``s`` not normalised in the numerator.
"""
from typing import Optional, Union

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


@MODELS.register_module()
class NDLoss(nn.Module):
    """ND loss against frozen, normalised teacher class means.

    The means are kept as the float32 buffer ``normalized_means [C, D]`` (saved in and
    restored from the state dict, never trained). Rows of classes without samples (all
    zero) stay zero; such samples contribute a constant 1 and no gradient.

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
        meta: dict = {}
        if isinstance(class_means, str):
            # Imported here so that importing the losses never pulls in mmkd.utils' deps.
            from mmkd.utils.class_means import load_class_means
            source = f"class-means file '{class_means}'"
            means, _, meta = load_class_means(class_means)
        elif isinstance(class_means, Tensor):
            source = 'class_means tensor'
            means = class_means.detach().float().cpu()
        else:
            raise ValueError(f'NDLoss: class_means must be a [C, D] tensor or a file path, '
                             f'got {type(class_means).__name__}.')
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
        norms = means.norm(dim=1, keepdim=True).clamp(min=1e-12)
        self.register_buffer('normalized_means', (means / norms).contiguous())
        self.num_classes = num_rows
        self.in_channels = dim
        self.loss_weight = loss_weight

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
        if student_emb.dim() == 2 and student_emb.shape[1] != self.in_channels:
            raise ValueError(
                f'NDLoss: student_emb has D={student_emb.shape[1]} but the class means have '
                f'D={self.in_channels}; '
                f'{_projector_hint(student_emb.shape[1], self.in_channels)}.')
        return self.loss_weight * nd_loss(student_emb, teacher_emb, labels,
                                          self.normalized_means)

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, in_channels={self.in_channels}, '
                f'loss_weight={self.loss_weight}')
