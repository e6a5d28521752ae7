"""Hinton's knowledge distillation on logits (the papers' KD: batchmean KL · T²)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import MODELS


def kd_loss(student_logits: Tensor,
            teacher_logits: Tensor,
            temperature: float = 1.0,
            mode: str = 'softmax') -> Tensor:
    """KL(teacher ‖ student) on temperature-softened outputs, times ``T²``.

    Args:
        student_logits (Tensor): ``[N, C]`` (softmax mode; leading dims are flattened,
            the class dim is last) or any shape (sigmoid mode).
        teacher_logits (Tensor): same shape; no gradient flows into it.
        temperature (float): T.
        mode (str): ``'softmax'``: KL between categorical distributions over the last
            dim, summed over classes and averaged over samples (PyTorch's
            ``batchmean``) — unlike mmdet's ``KnowledgeDistillationKLDivLoss``, which
            also averages over classes. ``'sigmoid'``: per-element Bernoulli KL (dense
            heads with sigmoid classifiers such as RetinaNet), averaged over elements.

    Returns:
        Tensor: scalar, fp32.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f'student logits {tuple(student_logits.shape)} and teacher logits '
                         f'{tuple(teacher_logits.shape)} differ: do the student and the '
                         'teacher have the same number of classes (and anchors)?')
    s = student_logits.float() / temperature
    t = teacher_logits.detach().float() / temperature
    if mode == 'softmax':
        s = s.reshape(-1, s.size(-1))
        t = t.reshape(-1, t.size(-1))
        kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction='sum',
                      log_target=True) / max(s.size(0), 1)
    elif mode == 'sigmoid':
        # KL(Bern(p_t) ‖ Bern(p_s)) term by term in log-sigmoids: no cancellation of two
        # large cross-entropies, so it never rounds below zero.
        p_t = torch.sigmoid(t)
        kl = (p_t * (F.logsigmoid(t) - F.logsigmoid(s)) +
              (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))).mean()
    else:
        raise ValueError(f"KDLoss mode must be 'softmax' or 'sigmoid', got {mode!r}")
    return kl * temperature**2


@MODELS.register_module()
class KDLoss(nn.Module):
    """``loss_weight · kd_loss(...)``; see :func:`kd_loss`."""

    def __init__(self,
                 temperature: float = 1.0,
                 mode: str = 'softmax',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if mode not in ('softmax', 'sigmoid'):
            raise ValueError(f"KDLoss mode must be 'softmax' or 'sigmoid', got {mode!r}")
        self.temperature = temperature
        self.mode = mode
        self.loss_weight = loss_weight

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return self.loss_weight * kd_loss(student_logits, teacher_logits,
                                          self.temperature, self.mode)
