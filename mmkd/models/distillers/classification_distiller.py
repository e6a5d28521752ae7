"""Distillation between two MMPretrain image classifiers (CIFAR / ImageNet ResNets...)."""
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..recorders import ClassifierRecorder
from .base_distiller import BaseDistiller, DistillStep
from .teacher import ConfigLike, resolve_model_config

#: virtual sources that need the classifier's final fc recorded, per side
HEAD_FIELDS = ('logits', 'embedding')


def classifier_num_classes(classifier: nn.Module) -> Optional[int]:
    head = getattr(classifier, 'head', None)
    return getattr(head, 'num_classes', None)


def batch_labels(data_samples: Sequence) -> Tensor:
    """``[N]`` long: the single gt label of every sample of a batch.

    Raises:
        ValueError: a sample has no ``gt_label`` or more than one label (multi-label
            data, or batch augmentations such as Mixup that replace labels by scores).
    """
    labels = []
    for i, sample in enumerate(data_samples):
        label = sample.get('gt_label', None) if hasattr(sample, 'get') else None
        if label is None or label.numel() != 1:
            found = 'no gt_label' if label is None else f'{label.numel()} labels'
            raise ValueError(
                f'the labels source needs exactly one gt label per image; sample {i} has '
                f'{found} (multi-label data and label-mixing batch augments such as Mixup '
                'are not supported by label-based distill losses).')
        labels.append(label.reshape(1))
    return torch.cat(labels).long()


#: the teacher's BatchNorm during distillation: running statistics, or batch statistics
TEACHER_BN_MODES = ('eval', 'train')


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """While inside, every BatchNorm of ``model`` normalises with the statistics of the
    batch it is given (as in training mode) **without** updating its running statistics
    or ``num_batches_tracked`` (``track_running_stats`` is off meanwhile); the rest of
    the model keeps its mode (e.g. Dropout stays off in an eval-mode teacher)."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    saved = [(bn.training, bn.track_running_stats) for bn in bns]
    for bn in bns:
        bn.training, bn.track_running_stats = True, False
    try:
        yield
    finally:
        for bn, (training, track) in zip(bns, saved):
            bn.training, bn.track_running_stats = training, track


class StagedClassifier:
    """Runs an mmpretrain ``ImageClassifier`` stage by stage (FCFD's mixed paths).

    A *stage* is one residual layer of the backbone, in ``backbone.res_layers`` order
    (``layer1..3`` of :class:`~mmkd.models.backbones.CIFARResNet`, ``layer1..4`` of
    mmpretrain's ``ResNet``). The stem runs before stage 0 and nothing runs between the
    last stage and the neck (checked: the backbone must output its last stage).

    Args:
        classifier (nn.Module): the student or the teacher.
        owner (str): ``'student'`` or ``'teacher'``, for error messages.
    """

    def __init__(self, classifier: nn.Module, owner: str = 'model') -> None:
        backbone = getattr(classifier, 'backbone', None)
        names = list(getattr(backbone, 'res_layers', None) or [])
        if not names:
            raise ValueError(
                f'{owner}: stage-wise sources need a backbone with `res_layers` (the names '
                'of its stages, as mmpretrain ResNet / mmkd CIFARResNet have); '
                f'{type(backbone).__name__} has none.')
        out_indices = tuple(getattr(backbone, 'out_indices', (len(names) - 1, )))
        if out_indices[-1] != len(names) - 1:
            raise ValueError(f'{owner}: the backbone must output its last stage '
                             f'(out_indices ending in {len(names) - 1}), got {out_indices}.')
        self.classifier = classifier
        self.owner = owner
        self.names = names
        self.paths = [f'backbone.{name}' for name in names]

    @property
    def num_stages(self) -> int:
        return len(self.names)

    def stage_module(self, index: int) -> nn.Module:
        return getattr(self.classifier.backbone, self.names[index])

    def run_stages(self, x: Tensor, start: int, stop: Optional[int] = None) -> List[Tensor]:
        """Run stages ``start .. stop - 1`` on ``x`` (the output of stage ``start - 1``);
        returns their outputs ``[B, C_k, H_k, W_k]``."""
        outs = []
        for index in range(start, self.num_stages if stop is None else stop):
            x = self.stage_module(index)(x)
            outs.append(x)
        return outs

    def head(self, last_stage: Tensor) -> Tensor:
        """Neck + head on the last stage output ``[B, C, H, W]`` -> logits ``[B, K]``."""
        feats = (last_stage, )
        if getattr(self.classifier, 'neck', None) is not None:
            feats = self.classifier.neck(feats)
        return self.classifier.head(feats)


@MMPRETRAIN_MODELS.register_module()
class ClassificationDistiller(BaseDistiller):
    """Distills a teacher image classifier into a student (mmpretrain
    ``ImageClassifier`` s, e.g. the CIFAR ResNets or ImageNet ResNet-34 → 18).

    Sources a loss input may name, besides ``'student.<module path>'`` /
    ``'teacher.<module path>'`` (e.g. ``'student.backbone.layer3'``: a stage output
    ``[B, C, H, W]``):

    =========================  ==============================================================
    ``data_samples``           the batch's ``DataSample`` list
    ``labels``                 ``[N]`` long gt labels
    ``{side}.logits``          ``[N, num_classes]`` the classifier's output (``head.fc``)
    ``{side}.embedding``       ``[N, D]`` the penultimate feature: the input of ``head.fc``
                               (after global pooling / neck and the head's ``pre_logits``)
    ``{side}.stages``          tuple of the backbone's stage outputs (``backbone.res_layers``
                               order), each ``[B, C_k, H_k, W_k]``
    ``{side}.staged``          :class:`StagedClassifier` of that side (runs later stages
                               and the head on given features; teacher: frozen weights,
                               gradients flow to the inputs)
    ``progress``               ``(iteration, epoch)`` of the run (for in-loss schedules)
    =========================  ==============================================================

    The teacher (eval mode, no grad) runs ``extract_feat`` and, when a source needs its
    logits or embedding (or a ``head.*`` module), its head (``pre_logits`` + ``fc``) —
    never its loss. ``predict`` / export are the student alone.

    Args:
        head_fc (str): path of both classifiers' final ``nn.Linear`` (the logits /
            embedding sources). Defaults to ``'head.fc'`` (``LinearClsHead``).
        teacher_bn (str): how the teacher's BatchNorm layers normalise while the distill
            losses are computed. ``'eval'`` (default): with the teacher's running
            statistics. ``'train'``: with the statistics of the batch they see — the
            teacher's own forward and every teacher stage a loss runs (FCFD's
            student→teacher mixed paths then normalise with the batch statistics of the
            bridged student features) — as the FCFD authors, who keep the teacher in
            train mode; unlike their code the teacher's running statistics are never
            updated (its state, evaluation and checkpoint stay those of
            ``teacher_ckpt``). Only BatchNorm changes: the teacher stays in eval mode
            otherwise, frozen and under no_grad for its own forward.
        Others: see :class:`BaseDistiller`.
    """

    task_registry = MMPRETRAIN_MODELS

    def __init__(self,
                 student: ConfigLike,
                 teacher: ConfigLike,
                 teacher_ckpt: Optional[str] = None,
                 distill_losses: Optional[Dict[str, dict]] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 inherit: Optional[Sequence[str]] = None,
                 nonfinite: str = 'raise',
                 head_fc: str = 'head.fc',
                 teacher_bn: str = 'eval',
                 teacher_dtype: Optional[str] = None) -> None:
        if teacher_bn not in TEACHER_BN_MODES:
            raise ValueError(f'teacher_bn must be one of {TEACHER_BN_MODES}, got '
                             f'{teacher_bn!r}.')
        # set before the base class registers the sources (which builds the recorders)
        object.__setattr__(self, 'head_fc', head_fc)
        object.__setattr__(self, 'head_recorders', {})
        object.__setattr__(self, 'staged', {})
        if data_preprocessor is None:
            data_preprocessor = resolve_model_config(student, 'student').get(
                'data_preprocessor') or {}
        if isinstance(data_preprocessor, dict):
            # as ImageClassifier does: mmpretrain configs give it without a type
            data_preprocessor = dict(data_preprocessor)
            data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
        super().__init__(student, teacher, teacher_ckpt, distill_losses, data_preprocessor,
                         init_cfg, inherit, nonfinite, teacher_dtype)
        self.teacher_bn = teacher_bn

    @contextmanager
    def _teacher_norms(self) -> Iterator[None]:
        """The context the distill losses run in (see ``teacher_bn``)."""
        if self.teacher_bn != 'train':
            yield
            return
        with batch_statistics(self.teacher):
            object.__setattr__(self, '_teacher_batch_stats', True)
            try:
                yield
            finally:
                object.__setattr__(self, '_teacher_batch_stats', False)

    def train(self, mode: bool = True) -> 'ClassificationDistiller':
        """As :meth:`BaseDistiller.train` (the teacher stays in eval mode); inside
        :meth:`_teacher_norms` the teacher's BatchNorm layers keep using batch statistics
        (``collect_loss_inputs`` switches the distiller to eval mode meanwhile)."""
        super().train(mode)
        if getattr(self, '_teacher_batch_stats', False):
            for module in self.teacher.modules():
                if isinstance(module, _BatchNorm):
                    module.training = True
        return self

    def loss(self, inputs: Tensor, data_samples: List) -> Dict[str, Tensor]:
        with self._teacher_norms():
            return super().loss(inputs, data_samples)

    def collect_loss_inputs(self, data_batch: dict, names: Union[str, Sequence[str]]):
        """:meth:`BaseDistiller.collect_loss_inputs`, with the teacher's BatchNorm as in
        training (``teacher_bn``)."""
        with self._teacher_norms():
            return super().collect_loss_inputs(data_batch, names)

    def _check_compatible(self) -> None:
        n_s, n_t = classifier_num_classes(self.student), classifier_num_classes(self.teacher)
        if n_s is not None and n_t is not None and n_s != n_t:
            raise ValueError(
                f'student predicts {n_s} classes but the teacher {n_t}: distillation needs '
                'both trained on the same classes; fix num_classes in one of the configs.')

    # ---------------------------------------------------------------- sources
    def _model(self, side: str) -> nn.Module:
        return self.student if side == 'student' else self.teacher

    def _head_recorder(self, side: str) -> ClassifierRecorder:
        if side not in self.head_recorders:
            self.head_recorders[side] = ClassifierRecorder(self._model(side), self.head_fc,
                                                           side)
        return self.head_recorders[side]

    def _staged(self, side: str) -> StagedClassifier:
        if side not in self.staged:
            self.staged[side] = StagedClassifier(self._model(side), side)
        return self.staged[side]

    def _virtual_sources(self) -> Dict[str, Callable[[DistillStep], Any]]:
        sources = super()._virtual_sources()
        sources['labels'] = lambda step: batch_labels(step.data_samples).to(
            step.inputs.device)
        sources['progress'] = lambda step: self.progress
        for side in ('student', 'teacher'):
            for field in HEAD_FIELDS:
                sources[f'{side}.{field}'] = \
                    lambda step, s=side, f=field: getattr(self.head_recorders[s], f)
            sources[f'{side}.stages'] = lambda step, s=side: tuple(
                self._recorder(s).get(path) for path in self.staged[s].paths)
            sources[f'{side}.staged'] = lambda step, s=side: self.staged[s]
        return sources

    def _recorder(self, side: str):
        return self.student_recorder if side == 'student' else self.teacher_recorder

    def _virtual_source_paths(self, source: str) -> Dict[str, Set[str]]:
        side, _, field = source.partition('.')
        if field in HEAD_FIELDS:
            self._head_recorder(side)
        elif field in ('stages', 'staged'):
            staged = self._staged(side)
            if field == 'stages':
                return {side: set(staged.paths)}
        return {}

    # ---------------------------------------------------------------- training
    def _student_loss(self, inputs: Tensor, data_samples: List) -> Dict[str, Tensor]:
        """The student's own losses; mmpretrain's ``loss`` (its cross-entropy) is
        renamed ``loss_cls``: MMEngine logs the total under ``loss``."""
        with ExitStack() as stack:
            if 'student' in self.head_recorders:
                stack.enter_context(self.head_recorders['student'].recording())
            losses = super()._student_loss(inputs, data_samples)
        return {('loss_cls' if key == 'loss' else key): value
                for key, value in losses.items()}

    def _forward(self, inputs: Tensor, data_samples: Optional[List] = None) -> Any:
        """The student's ``forward(mode='tensor')`` (its logits)."""
        return self.student(inputs, data_samples, mode='tensor')

    @property
    def _teacher_needs_head(self) -> bool:
        return 'teacher' in self.head_recorders or any(
            p == 'head' or p.startswith('head.') for p in self.teacher_paths)

    def _run_teacher(self, step: DistillStep) -> None:
        with ExitStack() as stack:
            if 'teacher' in self.head_recorders:
                stack.enter_context(self.head_recorders['teacher'].recording())
            feats = self.teacher.extract_feat(self.teacher_input(step.inputs))
            if self._teacher_needs_head:
                self.teacher.head(feats)  # pre_logits + fc, never the loss


__all__ = ['ClassificationDistiller', 'StagedClassifier', 'batch_labels',
           'classifier_num_classes']
