"""Function-consistent feature distillation (FCFD) for image classifiers.

"Function-Consistent Feature Distillation" (Liu, Kan, Shan, Chen; ICLR 2023,
arXiv 2304.11832); classification setting, as the authors' code
(``LiuDongyang6/FCFD``, ``classification/models/meta.py`` and ``cifar/main.py``) runs it.

Both networks are split into their ``K`` backbone stages (the residual layers:
``layer1..3`` of a CIFAR ResNet, ``layer1..4`` of an ImageNet ResNet; the stem is not a
switch point). Bridges map a stage output of one network into the other's space:
``B_s→t[k]`` (``k = 0 .. K-1``) and ``B_t→s[k]`` (``k = 0 .. K-2``), each a 3×3 conv
(no bias) + BN (+ LeakyReLU(0.1) when the *target* network's stages take post-ReLU
inputs, as ResNets do: the authors' ``stage_input == 'afterrelu'``, chosen per direction;
their WRNs take pre-BN inputs and get none), Kaiming-initialised. Where the two stage
outputs differ in resolution (``student_strides`` / ``teacher_strides``) the conv is a
3×3 stride-2 conv (source twice the target's size) or a 4×4 stride-2 transposed conv
(half its size), with a bias, as the authors build them. Besides the pure student and
teacher paths, every iteration samples ``num_mixed_paths`` (2) paths from the "switch
once" set

* ``s→t`` after stage ``j``: student stages ``0..j``, ``B_s→t[j]``, teacher stages
  ``j+1..K-1`` and head (gradients flow *through* the frozen teacher into the bridge and
  the student);
* ``t→s`` after stage ``j``: teacher stages ``0..j`` (no grad), ``B_t→s[j]``, student
  stages ``j+1..K-1`` and head,

``j = 0 .. K-2`` (K = 3: the authors' 0011, 0001, 1100, 1110 with the stem counted as a
stage). Losses (the student's cross-entropy is the student's own loss):

* ``kl_s``: ``KL_T(p_t ‖ p_s) · T²`` on the student's logits (weight ``kl_weight``);
  ``kl_mix``: the same for the logits of each sampled mixed path (weight
  ``kl_mix_weight``, default ``kl_weight``; the authors' WRN-16-2 ← WRN-40-2 config uses
  0.2);
* ``l2``: at every stage ``k``, the MSE of each *teacher-space* feature other than the
  pure teacher's — the bridged student feature ``B_s→t[k](s_k)`` and the teacher-stage
  outputs of sampled ``s→t`` paths — to the pure teacher feature ``t_k``; at the last
  stage also on ``GAP(ReLU(·))``. Weight ``l2_weight`` (5; 0.02 for R56→R20 and ImageNet
  R34→R18) times ``min(1, (epoch + 1) / l2_warmup_epochs)``, the linear ramp over the
  first 20 epochs on CIFAR, 5 on ImageNet (fed by the ``progress`` source).

Mixed paths keep **separate BatchNorm running statistics** in the student stages they
run (one set per mixed path and stage, sharing the affine parameters), so they never
touch the statistics the student is evaluated with. As in the authors' code these
statistics only serve to evaluate the (discarded) mixed paths, which mmkd never does;
they are kept in memory, not in checkpoints. The teacher's BatchNorm mode is the
distiller's ``teacher_bn``: ``'eval'`` (running statistics) or ``'train'`` (the authors':
batch statistics, also on the mixed ``s→t`` paths, without updating the teacher's
running statistics).

Paths are drawn from the loss's own generator, seeded once from torch's global RNG (rank
0's seed on every DDP rank), so all ranks sample the same paths. A ``t→s`` bridge that
no path of a step uses gets a zero-contribution term (DDP without
``find_unused_parameters`` sees a gradient for every parameter) and, right before the
optimizer step, ``.grad = None`` (:mod:`mmkd.utils.step_skip`): the optimizer leaves it
untouched that step — no weight decay, no momentum — as in the authors' code, where its
gradient is ``None``.

Bridges are trained with the student and dropped when the student is exported.
``forward`` returns ``dict(kl_s=..., kl_mix=..., l2=...)``; the distiller sums and logs
them. Wiring (see ``configs/classification/*/fcfd_*.py``)::

    inputs=dict(student_feats='student.stages', teacher_feats='teacher.stages',
                student_logits='student.logits', teacher_logits='teacher.logits',
                student_net='student.staged', teacher_net='teacher.staged',
                progress='progress')
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd.registry import MODELS
from mmkd.utils.step_skip import register_step_skip
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


#: how a bridge changes the resolution: its source map is the same size, twice (``down``)
#: or half (``up``) the size of its target
RESAMPLE = ('none', 'down', 'up')


def bridge_resample(source_stride: int, target_stride: int, where: str) -> str:
    """``'none'`` / ``'down'`` / ``'up'`` for a bridge from a stage output of total stride
    ``source_stride`` to one of ``target_stride``."""
    if source_stride == target_stride:
        return 'none'
    if target_stride == 2 * source_stride:
        return 'down'
    if source_stride == 2 * target_stride:
        return 'up'
    raise ValueError(f'FCFDClsLoss: {where}: a bridge from stride {source_stride} to stride '
                     f'{target_stride} is not supported (the strides must be equal or differ '
                     'by a factor of 2); fix student_strides / teacher_strides.')


class FCFDBridge(nn.Sequential):
    """``[B, C_in, H, W] -> [B, C_out, H', W']``: conv (Kaiming-normal, ``fan_out``) + BN
    (weight 1, bias 0) (+ LeakyReLU(0.1)).

    The conv is 3×3 stride 1 without bias (``resample='none'``, ``H' = H``), 3×3 stride 2
    with bias (``'down'``, ``H' = ⌈H / 2⌉``) or a 4×4 stride-2 transposed conv with bias
    and PyTorch's default init (``'up'``, ``H' = 2H``), as the authors' bridges.
    """

    def __init__(self, in_channels: int, out_channels: int, activation: bool = True,
                 resample: str = 'none') -> None:
        if resample not in RESAMPLE:
            raise ValueError(f'FCFDBridge: resample must be one of {RESAMPLE}, got '
                             f'{resample!r}.')
        if resample == 'none':
            conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        elif resample == 'down':
            conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        else:
            conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)
        layers = [conv, nn.BatchNorm2d(out_channels)]
        if activation:
            layers.append(nn.LeakyReLU(negative_slope=0.1))
        super().__init__(*layers)
        self.in_channels = in_channels
        self.resample = resample
        if isinstance(conv, nn.Conv2d):
            nn.init.kaiming_normal_(conv.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x: Tensor) -> Tensor:
        if x.size(1) != self.in_channels:
            raise ValueError(f'FCFD bridge expects {self.in_channels} channels, got a feature '
                             f'of shape {tuple(x.shape)}; fix student_channels / '
                             'teacher_channels of FCFDClsLoss.')
        return super().forward(x)


def _per_direction(value: Union[bool, Dict[str, bool]], name: str) -> Dict[str, bool]:
    if isinstance(value, bool):
        return dict(s2t=value, t2s=value)
    if isinstance(value, dict) and set(value) == {'s2t', 't2s'} and all(
            isinstance(v, bool) for v in value.values()):
        return dict(value)
    raise ValueError(f"FCFDClsLoss: {name} must be a bool or dict(s2t=bool, t2s=bool), "
                     f'got {value!r}.')


@MODELS.register_module()
class FCFDClsLoss(nn.Module):
    """FCFD for classifiers (see the module docstring).

    Args:
        student_channels (Sequence[int]): width of each student stage (``K`` entries,
            e.g. ``(16, 32, 64)`` for resnet20).
        teacher_channels (Sequence[int]): width of each teacher stage (``K`` entries).
        temperature (float): ``T`` of the KL terms (4 on CIFAR, 1 on ImageNet).
        kl_weight (float): weight of the student path's KL term. Defaults to 1.
        kl_mix_weight (float, optional): weight of each mixed path's KL term. Defaults to
            ``kl_weight`` (the authors' configs: 1; 0.2 for WRN-16-2 ← WRN-40-2).
        l2_weight (float): weight of the L2 term after the ramp. Defaults to 5.
        l2_warmup_epochs (int): epochs of the L2 ramp (0: none). Defaults to 20.
        num_mixed_paths (int): mixed paths sampled per iteration. Defaults to 2.
        directions (Sequence[str]): mixed-path directions to sample from: ``('s2t',
            't2s')`` (the authors' ``bi``, default), ``('s2t', )`` or ``('t2s', )``.
        bridge_activation (bool | dict): LeakyReLU(0.1) after the bridges' BN; a bool for
            both directions or ``dict(s2t=..., t2s=...)``. The authors add it when the
            bridge's *target* network takes post-ReLU stage inputs (ResNets, MobileNet,
            ShuffleNetV2), not for WRN / VGG / MobileNetV2 / ShuffleNetV1 targets: for a
            ResNet student and a WRN teacher, ``dict(s2t=False, t2s=True)``. Defaults to
            True (ResNet pairs).
        student_strides, teacher_strides (Sequence[int], optional): total stride of each
            stage output (``K`` entries, e.g. ``(1, 2, 4)`` for a CIFAR ResNet, ``(4, 8,
            16, 32)`` for an ImageNet ResNet). Where they differ by a factor of 2 the
            bridge resamples (see :class:`FCFDBridge`). Defaults to equal resolutions.
        separate_bn_stats (bool): mixed paths keep their own BN running statistics in the
            student stages. Defaults to True.
    """

    def __init__(self,
                 student_channels: Sequence[int],
                 teacher_channels: Sequence[int],
                 temperature: float = 4.0,
                 kl_weight: float = 1.0,
                 kl_mix_weight: Optional[float] = None,
                 l2_weight: float = 5.0,
                 l2_warmup_epochs: int = 20,
                 num_mixed_paths: int = 2,
                 directions: Sequence[str] = ('s2t', 't2s'),
                 bridge_activation: Union[bool, Dict[str, bool]] = True,
                 separate_bn_stats: bool = True,
                 student_strides: Optional[Sequence[int]] = None,
                 teacher_strides: Optional[Sequence[int]] = None) -> None:
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
        self.kl_mix_weight = kl_weight if kl_mix_weight is None else kl_mix_weight
        self.l2_weight = l2_weight
        self.l2_schedule = LossSchedule(warmup_epochs=int(l2_warmup_epochs))
        self.separate_bn_stats = separate_bn_stats
        activation = _per_direction(bridge_activation, 'bridge_activation')
        strides = []
        for name, value in (('student_strides', student_strides),
                            ('teacher_strides', teacher_strides)):
            value = [1] * self.num_stages if value is None else [int(v) for v in value]
            if len(value) != self.num_stages or min(value) < 1:
                raise ValueError(f'FCFDClsLoss: {name} needs {self.num_stages} positive '
                                 f'entries (one per stage), got {value}.')
            strides.append(value)
        self.student_strides, self.teacher_strides = strides
        self.s2t = nn.ModuleList(
            FCFDBridge(cs, ct, activation['s2t'],
                       bridge_resample(ss, ts, f's2t bridge of stage {k}'))
            for k, (cs, ct, ss, ts) in enumerate(zip(
                student_channels, teacher_channels, *strides)))
        self.t2s = nn.ModuleList(
            FCFDBridge(ct, cs, activation['t2s'],
                       bridge_resample(ts, ss, f't2s bridge of stage {k}'))
            for k, (cs, ct, ss, ts) in enumerate(zip(
                student_channels[:-1], teacher_channels[:-1], *strides)))
        self.mixed_paths: List[MixedPath] = [
            (d, j) for d in ('s2t', 't2s') if d in directions
            for j in range(self.num_stages - 1)]
        if not 0 <= num_mixed_paths <= len(self.mixed_paths):
            raise ValueError(f'FCFDClsLoss: num_mixed_paths must be in [0, '
                             f'{len(self.mixed_paths)}], got {num_mixed_paths}.')
        self.num_mixed_paths = num_mixed_paths
        self._bn_stats: Dict[Tuple[str, int], List[Tuple[Tensor, Tensor, Tensor]]] = {}
        self.last_paths: List[MixedPath] = []
        self._generator: Optional[torch.Generator] = None
        #: t2s bridges some forward used since the last optimizer step
        self._used_t2s: Set[int] = set()
        self.step_pending = False
        register_step_skip(self)

    def __setstate__(self, state: dict) -> None:  # deepcopy / unpickling: register too
        super().__setstate__(state)
        register_step_skip(self)

    # ---------------------------------------------------------------- helpers
    def sample_paths(self) -> List[MixedPath]:
        """``num_mixed_paths`` distinct mixed paths, drawn with the loss's generator
        (created on first use, seeded from torch's global RNG; in a distributed run with
        rank 0's seed, so every rank draws the same paths)."""
        if self._generator is None:
            self._generator = self._new_generator()
        order = torch.randperm(len(self.mixed_paths),
                               generator=self._generator)[:self.num_mixed_paths].tolist()
        return [self.mixed_paths[i] for i in sorted(order)]

    @staticmethod
    def _new_generator() -> torch.Generator:
        seed = torch.randint(0, 2**62, (1, ))
        from mmengine.dist import broadcast, get_world_size
        if get_world_size() > 1:  # once per run: the same paths on every rank
            broadcast(seed, src=0)
        return torch.Generator().manual_seed(int(seed))

    # ------------------------------------------------- unsampled bridges (step_skip)
    def before_optimizer_step(self, held: Set[int]) -> None:
        """Called right before an optimizer step (see :mod:`mmkd.utils.step_skip`): if
        that optimizer holds the bridges, drop the gradient of every ``t→s`` bridge no
        path used since the last step, so that the step leaves it untouched."""
        if not any(id(p) in held for p in self.s2t.parameters()):
            return
        for j, bridge in enumerate(self.t2s):
            if j not in self._used_t2s:
                for p in bridge.parameters():
                    p.grad = None
        self._used_t2s = set()
        self.step_pending = False

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
            if s.shape[0] != t.shape[0]:
                raise ValueError(f'FCFDClsLoss: stage {k}: student {tuple(s.shape)} and '
                                 f'teacher {tuple(t.shape)} have different batch sizes.')

    @staticmethod
    def _check_bridged(out: Tensor, target: Tensor, where: str) -> Tensor:
        if out.shape[-2:] != target.shape[-2:]:
            raise ValueError(
                f'FCFDClsLoss: the {where} gives {tuple(out.shape[-2:])} maps but the other '
                f'network has {tuple(target.shape[-2:])} there; give the stages\' strides '
                '(student_strides / teacher_strides) so that the bridges resample.')
        return out

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
        bridged = [self._check_bridged(bridge(s), t, f's2t bridge of stage {k}')
                   for k, (bridge, s, t) in enumerate(zip(self.s2t, student_feats,
                                                          teacher_feats))]
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
                x = self._check_bridged(self.t2s[j](teacher_feats[j]), student_feats[j],
                                        f't2s bridge of stage {j}')
                modules = [student_net.stage_module(k) for k in range(j + 1, self.num_stages)]
                with self.own_bn_stats(modules, f't2s{j}'):
                    outs = student_net.run_stages(x, j + 1)
                logits = student_net.head(outs[-1])
            kl_mix = kl_mix + kd_loss(logits, teacher_logits, T)
        l2 = fcfd_l2_terms(teacher_space, teacher_feats)
        # bridges of paths not sampled this step get a zero gradient (DDP sees them all),
        # which before_optimizer_step turns into None (the step leaves them untouched)
        unused = [p for j, b in enumerate(self.t2s) if j not in used_t2s
                  for p in b.parameters()]
        if unused:
            kl_mix = kl_mix + 0. * sum(p.sum() for p in unused)
        if torch.is_grad_enabled():
            self._used_t2s |= used_t2s
            self.step_pending = True
        return dict(kl_s=self.kl_weight * kl_s, kl_mix=self.kl_mix_weight * kl_mix,
                    l2=(self.l2_weight * ramp) * l2)

    def extra_repr(self) -> str:
        return (f'stages={self.num_stages}, T={self.temperature}, kl_weight={self.kl_weight}, '
                f'kl_mix_weight={self.kl_mix_weight}, '
                f'l2_weight={self.l2_weight}, l2_warmup_epochs='
                f'{self.l2_schedule.warmup_epochs}, mixed_paths={self.num_mixed_paths} of '
                f'{self.mixed_paths}')
