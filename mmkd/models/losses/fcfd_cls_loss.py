"""Function-consistent feature distillation (FCFD) for image classifiers.

"Function-Consistent Feature Distillation" (Liu, Kan, Shan, Chen; ICLR 2023,
arXiv 2304.11832); classification setting, as the authors' code
(``LiuDongyang6/FCFD``, ``classification/models/meta.py`` and ``cifar/main.py``) runs it.

Both networks are split into their ``K`` backbone stages (the residual layers:
``layer1..3`` of a CIFAR ResNet, ``layer1..4`` of an ImageNet ResNet; the stem is not a
switch point). Bridges map a stage output of one network into the other's space:
``B_s→t[k]`` (``k = 0 .. K-1``) and ``B_t→s[k]`` (``k = 0 .. K-2``), each a 3×3 conv
(no bias) + BN (+ LeakyReLU(0.1), because ResNet stages take post-ReLU inputs; the
authors add it for ResNets), Kaiming-initialised. Besides the pure student and teacher
paths, every iteration samples ``num_mixed_paths`` (2) paths from the "switch once" set

* ``s→t`` after stage ``j``: student stages ``0..j``, ``B_s→t[j]``, teacher stages
  ``j+1..K-1`` and head (gradients flow *through* the frozen teacher into the bridge and
  the student);
* ``t→s`` after stage ``j``: teacher stages ``0..j`` (no grad), ``B_t→s[j]``, student
  stages ``j+1..K-1`` and head,

``j = 0 .. K-2`` (K = 3: the authors' 0011, 0001, 1100, 1110 with the stem counted as a
stage). Losses (the student's cross-entropy is the student's own loss):

* ``kl_s``: ``KL_T(p_t ‖ p_s) · T²`` on the student's logits; ``kl_mix``: the same for the
  logits of each sampled mixed path (weight ``kl_weight`` each);
* ``l2``: at every stage ``k``, the MSE of each *teacher-space* feature other than the
  pure teacher's — the bridged student feature ``B_s→t[k](s_k)`` and the teacher-stage
  outputs of sampled ``s→t`` paths — to the pure teacher feature ``t_k``; at the last
  stage also on ``GAP(ReLU(·))``. Weight ``l2_weight`` (5; 0.02 for R56→R20 and ImageNet
  R34→R18) times ``min(1, (epoch + 1) / l2_warmup_epochs)``, the linear ramp over the
  first 20 epochs (fed by the ``progress`` source).

Mixed paths keep **separate BatchNorm running statistics** in the student stages they
run (one set per mixed path and stage, sharing the affine parameters), so they never
touch the statistics the student is evaluated with. As in the authors' code these
statistics only serve to evaluate the (discarded) mixed paths, which mmkd never does;
they are kept in memory, not in checkpoints. The teacher stays in eval mode (running
statistics, unchanged) also on mixed paths.

Bridges are trained with the student and dropped when the student is exported.
``forward`` returns ``dict(kl_s=..., kl_mix=..., l2=...)``; the distiller sums and logs
them. Wiring (see ``configs/classification/*/fcfd_*.py``)::

    inputs=dict(student_feats='student.stages', teacher_feats='teacher.stages',
                student_logits='student.logits', teacher_logits='teacher.logits',
                student_net='student.staged', teacher_net='teacher.staged',
                progress='progress')
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd.registry import MODELS
from ..distillers.loss_schedule import LossSchedule
from .kd_loss import kd_loss

#: a mixed path: (direction 's2t' | 't2s', index of the last stage before the switch)
MixedPath = Tuple[str, int]


def fcfd_l2_terms(teacher_space: Sequence[Sequence[Tensor]],
                  teacher_feats: Sequence[Tensor]) -> Tensor:
    """FCFD's appearance term.

    Args:
        teacher_space: per stage ``k``, the teacher-space features ``[B, C_t,k, H_k,
            W_k]`` compared with the teacher's (bridged student, mixed ``s→t`` paths).
        teacher_feats: per stage ``k``, the pure teacher feature ``[B, C_t,k, H_k, W_k]``
            (detached here).

    Returns:
        Tensor: scalar fp32, ``Σ_k Σ_f MSE(f, t_k)`` (element means) plus, at the last
        stage, ``Σ_f MSE(GAP(ReLU(f)), GAP(ReLU(t_K)))``.
    """
    if len(teacher_space) != len(teacher_feats):
        raise ValueError(f'FCFD: {len(teacher_space)} stages of features but '
                         f'{len(teacher_feats)} teacher stages.')
    total = teacher_feats[0].new_zeros((), dtype=torch.float32)
    last = len(teacher_feats) - 1
    for k, (feats, target) in enumerate(zip(teacher_space, teacher_feats)):
        target = target.detach().float()
        for feat in feats:
            total = total + F.mse_loss(feat.float(), target)
            if k == last:
                total = total + F.mse_loss(
                    F.adaptive_avg_pool2d(F.relu(feat.float()), 1).flatten(1),
                    F.adaptive_avg_pool2d(F.relu(target), 1).flatten(1))
    return total


class FCFDBridge(nn.Sequential):
    """``[B, C_in, H, W] -> [B, C_out, H, W]``: conv3×3 (no bias) + BN (+ LeakyReLU(0.1)),
    Kaiming-normal (``fan_out``) conv, BN weight 1 / bias 0."""

    def __init__(self, in_channels: int, out_channels: int, activation: bool = True) -> None:
        layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                  nn.BatchNorm2d(out_channels)]
        if activation:
            layers.append(nn.LeakyReLU(negative_slope=0.1))
        super().__init__(*layers)
        self.in_channels = in_channels
        nn.init.kaiming_normal_(self[0].weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x: Tensor) -> Tensor:
        if x.size(1) != self.in_channels:
            raise ValueError(f'FCFD bridge expects {self.in_channels} channels, got a feature '
                             f'of shape {tuple(x.shape)}; fix student_channels / '
                             'teacher_channels of FCFDClsLoss.')
        return super().forward(x)


@MODELS.register_module()
class FCFDClsLoss(nn.Module):
    """FCFD for classifiers (see the module docstring).

    Args:
        student_channels (Sequence[int]): width of each student stage (``K`` entries,
            e.g. ``(16, 32, 64)`` for resnet20).
        teacher_channels (Sequence[int]): width of each teacher stage (``K`` entries).
        temperature (float): ``T`` of the KL terms (4 on CIFAR, 1 on ImageNet).
        kl_weight (float): weight of each KL term (student and mixed paths). Defaults to 1.
        l2_weight (float): weight of the L2 term after the ramp. Defaults to 5.
        l2_warmup_epochs (int): epochs of the L2 ramp (0: none). Defaults to 20.
        num_mixed_paths (int): mixed paths sampled per iteration. Defaults to 2.
        directions (Sequence[str]): mixed-path directions to sample from: ``('s2t',
            't2s')`` (the authors' ``bi``, default), ``('s2t', )`` or ``('t2s', )``.
        bridge_activation (bool): LeakyReLU(0.1) after the bridges' BN (the authors' choice
            for ResNets, whose stages take post-ReLU inputs). Defaults to True.
        separate_bn_stats (bool): mixed paths keep their own BN running statistics in the
            student stages. Defaults to True.
    """

    def __init__(self,
                 student_channels: Sequence[int],
                 teacher_channels: Sequence[int],
                 temperature: float = 4.0,
                 kl_weight: float = 1.0,
                 l2_weight: float = 5.0,
                 l2_warmup_epochs: int = 20,
                 num_mixed_paths: int = 2,
                 directions: Sequence[str] = ('s2t', 't2s'),
                 bridge_activation: bool = True,
                 separate_bn_stats: bool = True) -> None:
        super().__init__()
        student_channels, teacher_channels = list(student_channels), list(teacher_channels)
        if len(student_channels) != len(teacher_channels) or len(student_channels) < 2:
            raise ValueError(
                f'FCFDClsLoss: student_channels {student_channels} and teacher_channels '
                f'{teacher_channels} need one entry per stage (at least 2), the same number.')
        if not set(directions) <= {'s2t', 't2s'} or not directions:
            raise ValueError(f"FCFDClsLoss: directions must be a non-empty subset of ('s2t', "
                             f"'t2s'), got {directions!r}.")
        self.num_stages = len(student_channels)
        self.student_channels, self.teacher_channels = student_channels, teacher_channels
        self.temperature = temperature
        self.kl_weight = kl_weight
        self.l2_weight = l2_weight
        self.l2_schedule = LossSchedule(warmup_epochs=int(l2_warmup_epochs))
        self.separate_bn_stats = separate_bn_stats
        self.s2t = nn.ModuleList(
            FCFDBridge(cs, ct, bridge_activation)
            for cs, ct in zip(student_channels, teacher_channels))
        self.t2s = nn.ModuleList(
            FCFDBridge(ct, cs, bridge_activation)
            for cs, ct in zip(student_channels[:-1], teacher_channels[:-1]))
        self.mixed_paths: List[MixedPath] = [
            (d, j) for d in ('s2t', 't2s') if d in directions
            for j in range(self.num_stages - 1)]
        if not 0 <= num_mixed_paths <= len(self.mixed_paths):
            raise ValueError(f'FCFDClsLoss: num_mixed_paths must be in [0, '
                             f'{len(self.mixed_paths)}], got {num_mixed_paths}.')
        self.num_mixed_paths = num_mixed_paths
        self._bn_stats: Dict[Tuple[str, int], List[Tuple[Tensor, Tensor, Tensor]]] = {}
        self.last_paths: List[MixedPath] = []

    # ---------------------------------------------------------------- helpers
    def sample_paths(self) -> List[MixedPath]:
        """``num_mixed_paths`` distinct mixed paths, drawn with torch's global RNG."""
        order = torch.randperm(len(self.mixed_paths))[:self.num_mixed_paths].tolist()
        return [self.mixed_paths[i] for i in sorted(order)]

    @contextmanager
    def own_bn_stats(self, modules: Sequence[nn.Module], tag: str) -> Iterator[None]:
        """While inside, every BatchNorm of ``modules`` (in training mode) reads and
        updates the running statistics kept for ``tag`` instead of its own (created as
        mean 0 / var 1 / count 0 on first use); affine parameters are shared."""
        bns = [m for module in modules for m in module.modules()
               if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
        if not self.separate_bn_stats or not bns:
            yield
            return
        saved = [(bn.running_mean, bn.running_var, bn.num_batches_tracked) for bn in bns]
        for index, bn in enumerate(bns):
            key = (tag, index)
            stats = self._bn_stats.get(key)
            if stats is None or stats[0].device != bn.running_mean.device:
                stats = (torch.zeros_like(bn.running_mean), torch.ones_like(bn.running_var),
                         torch.zeros_like(bn.num_batches_tracked))
            bn.running_mean, bn.running_var, bn.num_batches_tracked = stats
        try:
            yield
        finally:
            for index, (bn, own) in enumerate(zip(bns, saved)):
                self._bn_stats[(tag, index)] = (bn.running_mean, bn.running_var,
                                                bn.num_batches_tracked)
                bn.running_mean, bn.running_var, bn.num_batches_tracked = own

    def _check(self, student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> None:
        for name, feats, channels in (('student', student_feats, self.student_channels),
                                      ('teacher', teacher_feats, self.teacher_channels)):
            got = [f.shape[1] for f in feats]
            if got != channels:
                raise ValueError(f'FCFDClsLoss: the {name} stages have {got} channels but the '
                                 f'loss was built with {name}_channels={channels}.')
        for k, (s, t) in enumerate(zip(student_feats, teacher_feats)):
            if s.shape[-2:] != t.shape[-2:] or s.shape[0] != t.shape[0]:
                raise ValueError(
                    f'FCFDClsLoss: stage {k}: student {tuple(s.shape)} and teacher '
                    f'{tuple(t.shape)} must have the same batch size and H x W (bridges are '
                    '3x3 convs without resampling).')

    # ---------------------------------------------------------------- forward
    def forward(self,
                student_feats: Sequence[Tensor],
                teacher_feats: Sequence[Tensor],
                student_logits: Tensor,
                teacher_logits: Tensor,
                student_net,
                teacher_net,
                progress: Optional[Tuple[int, int]] = None) -> Dict[str, Tensor]:
        """Compute the weighted terms.

        Args:
            student_feats: ``K`` student stage outputs ``[B, C_s,k, H_k, W_k]``.
            teacher_feats: ``K`` teacher stage outputs ``[B, C_t,k, H_k, W_k]``.
            student_logits (Tensor): ``[B, num_classes]``.
            teacher_logits (Tensor): ``[B, num_classes]``.
            student_net / teacher_net: :class:`~mmkd.models.distillers.StagedClassifier`
                of each side (``run_stages``, ``head``, ``stage_module``).
            progress: ``(iteration, epoch)``, needed for the L2 ramp.

        Returns:
            dict: ``kl_s``, ``kl_mix`` and ``l2`` (weighted, scalar fp32).
        """
        student_feats, teacher_feats = tuple(student_feats), tuple(teacher_feats)
        if len(student_feats) != self.num_stages or len(teacher_feats) != self.num_stages:
            raise ValueError(f'FCFDClsLoss: built for {self.num_stages} stages, got '
                             f'{len(student_feats)} student / {len(teacher_feats)} teacher.')
        self._check(student_feats, teacher_feats)
        if self.l2_schedule.is_constant:
            ramp = 1.0
        elif progress is None:
            raise ValueError("FCFDClsLoss: the L2 ramp needs the run's progress; wire "
                             "progress='progress' and add DistillScheduleHook.")
        else:
            ramp = self.l2_schedule.factor(*progress)
        teacher_feats = tuple(t.detach() for t in teacher_feats)
        bridged = [bridge(s) for bridge, s in zip(self.s2t, student_feats)]
        teacher_space: List[List[Tensor]] = [[b] for b in bridged]

        T = self.temperature
        kl_s = kd_loss(student_logits, teacher_logits, T)
        kl_mix = student_logits.new_zeros((), dtype=torch.float32)
        paths = self.sample_paths()
        self.last_paths = paths
        used_t2s = set()
        for direction, j in paths:
            if direction == 's2t':
                outs = teacher_net.run_stages(bridged[j], j + 1)
                for i, out in enumerate(outs):
                    teacher_space[j + 1 + i].append(out)
                logits = teacher_net.head(outs[-1])
            else:
                used_t2s.add(j)
                x = self.t2s[j](teacher_feats[j])
                modules = [student_net.stage_module(k) for k in range(j + 1, self.num_stages)]
                with self.own_bn_stats(modules, f't2s{j}'):
                    outs = student_net.run_stages(x, j + 1)
                logits = student_net.head(outs[-1])
            kl_mix = kl_mix + kd_loss(logits, teacher_logits, T)
        l2 = fcfd_l2_terms(teacher_space, teacher_feats)
        # bridges of paths not sampled this step get a zero gradient (DDP sees them all)
        unused = [p for j, b in enumerate(self.t2s) if j not in used_t2s
                  for p in b.parameters()]
        if unused:
            kl_mix = kl_mix + 0. * sum(p.sum() for p in unused)
        return dict(kl_s=self.kl_weight * kl_s, kl_mix=self.kl_weight * kl_mix,
                    l2=(self.l2_weight * ramp) * l2)

    def extra_repr(self) -> str:
        return (f'stages={self.num_stages}, T={self.temperature}, kl_weight={self.kl_weight}, '
                f'l2_weight={self.l2_weight}, l2_warmup_epochs='
                f'{self.l2_schedule.warmup_epochs}, mixed_paths={self.num_mixed_paths} of '
                f'{self.mixed_paths}')
