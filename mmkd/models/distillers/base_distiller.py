"""What every distiller does, whatever the task: teacher handling, feature capture,
loss wiring and the training step."""
import copy
import logging
from contextlib import contextmanager
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple,
                    Union)

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.registry import Registry
from torch import Tensor

from ...utils.rank_consistency import check_same_on_all_ranks
from ..recorders import ModuleOutputRecorder, get_submodule
from .loss_binding import LossBinding
from .teacher import (ConfigLike, InputRenormalizer, freeze, load_teacher_checkpoint,
                      resolve_model_config)
from .teacher_precision import TeacherPrecision

SIDES = ('student', 'teacher')


class DistillStep:
    """Everything one training step produced that a loss input may be fetched from."""

    def __init__(self, inputs: Tensor, data_samples: Optional[List]) -> None:
        self.inputs = inputs
        self.data_samples = data_samples
        self.values: Dict[str, Any] = {}


class BaseDistiller(BaseModel):
    """A student trained with the help of a frozen teacher.

    * ``loss()``: the student's own losses, then the teacher (no grad, eval mode, only as
      far as the configured losses need), then each distill loss, logged as
      ``distill.loss_<name>`` (a loss returning a dict of named terms also has each
      term logged, for information only, as ``distill.loss_<name>.<term>``).
    * ``predict()`` / ``forward(mode='predict')`` / ``_forward()``: the student alone.
    * The teacher is kept out of the module tree: it is not in ``parameters()``, the
      optimizer, DDP or ``state_dict()``. Its weights come from ``teacher_ckpt``, loaded
      strictly by :meth:`init_weights` (which the runner calls at the start of training,
      never at test time, so testing a distiller checkpoint needs no teacher).

    Args:
        student: model config of the student (dict or config path, see
            :func:`resolve_model_config`).
        teacher: model config of the teacher (dict, config path, ``mmkd::`` or
            ``mmdet::`` path).
        teacher_ckpt (str, optional): the teacher's weights (path or URL).
        distill_losses (dict): name -> :class:`LossBinding` config.
        data_preprocessor (dict, optional): defaults to the student's.
        inherit (Sequence[str], optional): module paths, e.g. ``('neck', 'rpn_head',
            'roi_head')``, whose weights the student copies from the teacher's module of
            the same path right after the teacher checkpoint is loaded at the start of
            training (FCFD's "inherit" strategy); see :meth:`inherit_from_teacher`.
        nonfinite (str): what a training step does when a distill loss is NaN or inf:
            ``'raise'`` stops training with the loss name and the iteration, ``'skip'``
            drops the step (no parameter or optimizer-state update) and logs it. Either
            way the weights are never updated with a non-finite loss.
        teacher_dtype (str, optional): ``'bf16'`` or ``'fp16'`` runs the teacher in that
            precision (weights cast once after loading, inputs cast on the way in, every
            output handed to the losses in fp32; :mod:`.teacher_precision`). Off by
            default (``None``: the teacher runs as built, fp32).
    """

    #: registry the student and teacher are built from (set by task subclasses)
    task_registry: Registry = None
    #: attributes of the student that the distiller itself answers for (task subclasses
    #: name them, see :meth:`__getattr__`): the parts mmdet / MMEngine runtime hooks
    #: address on ``runner.model`` directly
    student_attributes: Tuple[str, ...] = ()

    def __init__(self,
                 student: ConfigLike,
                 teacher: ConfigLike,
                 teacher_ckpt: Optional[str] = None,
                 distill_losses: Optional[Dict[str, dict]] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 inherit: Optional[Sequence[str]] = None,
                 nonfinite: str = 'raise',
                 teacher_dtype: Optional[str] = None) -> None:
        student_cfg = resolve_model_config(student, 'student')
        teacher_cfg = resolve_model_config(teacher, 'teacher')
        if data_preprocessor is None:
            data_preprocessor = copy.deepcopy(student_cfg.get('data_preprocessor'))
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = self.task_registry.build(student_cfg)
        self.teacher = freeze(self.task_registry.build(teacher_cfg))
        self.teacher_ckpt = teacher_ckpt
        self.teacher_loaded = False
        self.teacher_precision = TeacherPrecision(teacher_dtype)
        self.teacher_input = InputRenormalizer(data_preprocessor,
                                               teacher_cfg.get('data_preprocessor'))
        self._check_compatible()
        self.inherit = self._check_inherit(inherit)
        if nonfinite not in ('raise', 'skip'):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self.nonfinite = nonfinite
        self.skipped_steps = 0

        if not isinstance(distill_losses, dict) or not distill_losses:
            raise ValueError('distill_losses must be a non-empty dict of name -> loss '
                             f'binding config, got {distill_losses!r}')
        self.distill_losses = nn.ModuleDict({
            name: LossBinding(name, **cfg) for name, cfg in distill_losses.items()
        })
        module_paths: Dict[str, Set[str]] = {side: set() for side in SIDES}
        for binding in self.distill_losses.values():
            for source in binding.sources:
                side_paths = self._register_source(source)
                for side, paths in side_paths.items():
                    module_paths[side].update(paths)
        self.student_recorder = ModuleOutputRecorder(
            self.student, sorted(module_paths['student']), 'student')
        self.teacher_recorder = ModuleOutputRecorder(
            self.teacher, sorted(module_paths['teacher']), 'teacher')
        self.teacher_paths = module_paths['teacher']
        self.progress: Optional[Tuple[int, int]] = None
        self._predict_with_teacher = False
        self._register_load_state_dict_pre_hook(self._accept_plain_student_checkpoint)

    # ---------------------------------------------------------------- the teacher
    def __setattr__(self, name: str, value: Any) -> None:
        # The teacher is a plain attribute, not a submodule (see the class docstring).
        if name == 'teacher':
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        # Deliberate forwarding, for the runtime hooks of the detector families: e.g.
        # mmdet's YOLOXModeSwitchHook sets ``runner.model.bbox_head.use_l1 = True``. Only
        # the names in ``student_attributes`` are forwarded, only when the distiller has
        # no attribute of that name, and always to the student (never the teacher); the
        # forwarded module stays registered once, under ``student.`` (state dict, optimizer).
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in type(self).student_attributes:
                student = self.__dict__.get('_modules', {}).get('student')
                if student is not None and hasattr(student, name):
                    return getattr(student, name)
            raise

    def _apply(self, fn: Callable, *args, **kwargs) -> 'BaseDistiller':
        # .to() / .cuda() / .cpu() / .half() move the teacher along with the student.
        self.teacher._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> 'BaseDistiller':
        super().train(mode)
        self.teacher.eval()
        return self

    def init_weights(self) -> None:
        """Initialise the student and connectors, then load the teacher checkpoint (and
        copy the ``inherit`` modules from the teacher into the student).

        The runner calls this when training starts, resumed runs included; a resumed
        run then loads its checkpoint over everything set here (``load_or_resume`` runs
        after ``init_weights``), so inheriting only shapes a fresh start.

        In a distributed run the teacher's weights are then compared across processes
        (the runner broadcasts rank 0's state dict, which holds everything but the
        teacher): a rank that loaded a different teacher stops the run.

        A low-precision teacher (``teacher_dtype``) is cast last, once every fp32 use of
        its weights (the losses' ``init_from_teacher``, ``inherit``) is done."""
        super().init_weights()
        self.load_teacher()
        check_same_on_all_ranks(
            self.teacher.state_dict(), 'teacher',
            f'every process must load the same teacher_ckpt ({self.teacher_ckpt!r} here): '
            'put it on storage all nodes share, or copy the same file to each')
        if self.inherit:
            self.inherit_from_teacher()
        self.teacher_precision.apply(self.teacher)

    def _check_inherit(self, inherit: Optional[Sequence[str]]) -> Tuple[str, ...]:
        if inherit is None:
            return ()
        if isinstance(inherit, str) or not all(isinstance(p, str) and p for p in inherit):
            raise ValueError(f'inherit must be a list of module paths such as '
                             f"('neck', 'rpn_head', 'roi_head'), got {inherit!r}")
        for path in inherit:  # KeyError naming the closest valid paths
            get_submodule(self.student, path, 'student')
            get_submodule(self.teacher, path, 'teacher')
        return tuple(inherit)

    def inherit_from_teacher(self) -> Dict[str, Dict[str, List[str]]]:
        """Copy the teacher's weights into the student's modules named in ``inherit``.

        Every state-dict entry (parameters and buffers) of ``student.<path>`` whose
        counterpart in ``teacher.<path>`` has the same shape is copied; entries whose
        shapes differ, or that only one side has, are skipped and logged.

        Returns:
            dict: path -> ``dict(copied=[...], mismatched=[...], missing=[...])``.
        """
        report = {}
        for path in self.inherit:
            student_state = get_submodule(self.student, path, 'student').state_dict()
            teacher_state = get_submodule(self.teacher, path, 'teacher').state_dict()
            copied, mismatched = [], []
            with torch.no_grad():
                for key, value in student_state.items():
                    source = teacher_state.get(key)
                    if source is None:
                        continue
                    if source.shape != value.shape:
                        mismatched.append(f'{key} (student {tuple(value.shape)}, teacher '
                                          f'{tuple(source.shape)})')
                        continue
                    value.copy_(source)  # state_dict() tensors share the parameters' storage
                    copied.append(key)
            missing = sorted(set(student_state) ^ set(teacher_state))
            report[path] = dict(copied=copied, mismatched=mismatched, missing=missing)
            print_log(f'mmkd: inherit {path!r}: {len(copied)}/{len(student_state)} tensors '
                      'copied from the teacher', logger='current')
            skipped = mismatched + [f'{k} (only one side has it)' for k in missing]
            if skipped:
                print_log(f'mmkd: inherit {path!r}: skipped {len(skipped)}: '
                          + '; '.join(skipped), logger='current', level=logging.WARNING)
        return report

    def load_teacher(self) -> None:
        """Load ``teacher_ckpt`` strictly, then let losses read what they need from the
        teacher (e.g. LSH's ``sigma`` from the teacher classifier's weight std)."""
        if self.teacher_ckpt is None:
            raise ValueError(
                'teacher_ckpt is not set: distilling from a randomly initialised teacher '
                'would silently train a worse student. Set model.teacher_ckpt to the '
                "teacher's checkpoint (e.g. --cfg-options model.teacher_ckpt=PATH).")
        meta = load_teacher_checkpoint(self.teacher, self.teacher_ckpt)
        freeze(self.teacher)
        self.teacher_loaded = True
        for binding in self.distill_losses.values():
            if hasattr(binding.loss, 'init_from_teacher'):
                binding.loss.init_from_teacher(self.teacher)
        trained = ', '.join(f'{k} {meta[k]}' for k in ('epoch', 'iter') if k in meta)
        print_log(f'mmkd: teacher loaded from {self.teacher_ckpt}'
                  + (f' (trained to {trained})' if trained else ''), logger='current')

    @contextmanager
    def predicting_with_teacher(self) -> Iterator[None]:
        """Make ``predict()`` run the teacher (used to evaluate it before training)."""
        self._predict_with_teacher = True
        try:
            yield
        finally:
            self._predict_with_teacher = False

    # ---------------------------------------------------------------- checkpoints
    def _accept_plain_student_checkpoint(self, state_dict: dict, prefix: str,
                                         *args) -> None:
        """Let a plain student checkpoint (``load_from`` a detector/classifier trained
        alone) initialise the student: its keys get the ``student.`` prefix."""
        keys = [k for k in state_dict if k.startswith(prefix)]
        if not keys or any(k.startswith(prefix + 'student.') for k in keys):
            return
        student_keys = set(self.student.state_dict())
        if not any(k[len(prefix):] in student_keys for k in keys):
            return
        for key in keys:
            state_dict[prefix + 'student.' + key[len(prefix):]] = state_dict.pop(key)
        print_log('mmkd: loading a plain student checkpoint into the distiller\'s student',
                  logger='current')

    # ---------------------------------------------------------------- sources
    def _virtual_sources(self) -> Dict[str, Callable[[DistillStep], Any]]:
        """Sources that are not module outputs, name -> resolver (task subclasses add
        their own, e.g. ``'teacher.roi.embedding'``)."""
        return {'data_samples': lambda step: step.data_samples}

    def _virtual_source_paths(self, source: str) -> Dict[str, Set[str]]:
        """Module paths a virtual source needs recorded, per side."""
        return {}

    def _register_source(self, source: str) -> Dict[str, Set[str]]:
        """Validate ``source`` at build time; return the module paths to record."""
        if source in self._virtual_sources():
            return self._virtual_source_paths(source)
        side, _, path = source.partition('.')
        if side not in SIDES or not path:
            raise ValueError(
                f'unknown source {source!r}: use "student.<module path>", '
                f'"teacher.<module path>" or one of {sorted(self._virtual_sources())}')
        return {side: {path}}

    def _fetch(self, step: DistillStep, source: str) -> Any:
        if source not in step.values:
            virtual = self._virtual_sources()
            if source in virtual:
                step.values[source] = virtual[source](step)
            else:
                side, _, path = source.partition('.')
                recorder = self.student_recorder if side == 'student' else \
                    self.teacher_recorder
                step.values[source] = recorder.get(path)
            if source.startswith('teacher.'):  # a low-precision teacher's outputs in fp32
                step.values[source] = self.teacher_precision.to_fp32(step.values[source])
        return step.values[source]

    # ---------------------------------------------------------------- training
    def set_epoch(self, epoch: int) -> None:
        """What mmdet's ``SetEpochInfoHook`` calls before each training epoch: passed on to
        the student when it has a ``set_epoch`` of its own, a no-op otherwise (the frozen
        teacher needs no epoch; the distill-loss schedules get theirs from
        :class:`~mmkd.hooks.DistillScheduleHook`)."""
        if hasattr(self.student, 'set_epoch'):
            self.student.set_epoch(epoch)

    def set_progress(self, iteration: int, epoch: int) -> None:
        """Called by :class:`~mmkd.hooks.DistillScheduleHook` before each iteration."""
        self.progress = (iteration, epoch)

    def _loss_factors(self) -> Dict[str, float]:
        factors = {}
        for name, binding in self.distill_losses.items():
            if binding.schedule.is_constant:
                factors[name] = 1.0
            elif self.progress is None:
                raise RuntimeError(
                    f'distill loss {name!r} has a schedule ({binding.schedule}) but no '
                    "progress was set; add custom_hooks=[dict(type='DistillScheduleHook')] "
                    'to the config.')
            else:
                factors[name] = binding.schedule.factor(*self.progress)
        return factors

    def _student_loss(self, inputs: Tensor, data_samples: List) -> Dict[str, Tensor]:
        """The student's own losses; module outputs are recorded meanwhile."""
        with self.student_recorder.recording():
            return self.student.loss(inputs, data_samples)

    def _run_teacher(self, step: DistillStep) -> None:
        """Run the teacher as far as the losses need (called under no_grad)."""
        raise NotImplementedError

    def loss(self, inputs: Tensor, data_samples: List) -> Dict[str, Tensor]:
        if not self.teacher_loaded:
            raise RuntimeError(
                'the teacher weights are not loaded: call model.init_weights() (the '
                'runner does this when training starts) before computing losses.')
        factors = self._loss_factors()
        step = DistillStep(inputs, data_samples)
        with self.teacher_precision.mmcv_ops_context():
            losses = self._student_loss(inputs, data_samples)
            with torch.no_grad(), self.teacher_recorder.recording():
                self._run_teacher(step)
            fetch = lambda source: self._fetch(step, source)  # noqa: E731
            for name, binding in self.distill_losses.items():
                total, parts = binding(fetch, factors[name], return_parts=True)
                losses[f'distill.loss_{name}'] = total
                for term, value in parts.items():  # detached, log only (see parse_losses)
                    losses[f'distill.loss_{name}.{term}'] = value
        self._release_step()
        return losses

    def _release_step(self) -> None:
        """Drop what the recorders kept of this step: the losses hold what backward needs,
        and nothing of one step may stay alive into the next (task subclasses add their
        own recorders)."""
        self.student_recorder.clear()
        self.teacher_recorder.clear()

    def parse_losses(self, losses: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """MMEngine's ``parse_losses`` (the total is the sum of every ``*loss*`` entry),
        except that the terms of distill losses, ``distill.loss_<name>.<term>``, are
        logged but not summed: they are already part of ``distill.loss_<name>``."""
        prefixes = tuple(f'distill.loss_{name}.' for name in self.distill_losses)
        terms = {k: v for k, v in losses.items() if k.startswith(prefixes)}
        loss, log_vars = super().parse_losses(
            {k: v for k, v in losses.items() if k not in terms})
        for key, value in terms.items():
            log_vars[key] = value.detach().mean()
        return loss, log_vars

    @torch.no_grad()
    def collect_loss_inputs(self, data_batch: dict,
                            names: Union[str, Sequence[str]]) -> Dict[str, List[dict]]:
        """What the named distill losses receive on ``data_batch``, without training.

        Runs one distillation step exactly as :meth:`loss` does — data preprocessor
        (training mode), the student's loss pass, the teacher, the bindings' sources,
        levels and connectors — but under ``no_grad``, with the student in eval mode
        (its BatchNorm statistics are left untouched) and each binding's schedule
        ignored, and records the keyword arguments every call of each named loss's
        ``forward`` gets. Used by hooks that initialise a loss from data before training
        (e.g. :class:`~mmkd.hooks.LSHBiasInitHook`: the teacher-side input of an LSH
        loss over the training set). The losses themselves are evaluated too (the
        values are discarded). Global RNG state is consumed (RoI sampling); callers that
        care fork it.

        Args:
            data_batch (dict): a batch as the train dataloader yields it
                (``inputs`` / ``data_samples``, before the data preprocessor).
            names (str | Sequence[str]): keys of ``distill_losses``.

        Returns:
            dict: name -> list with one dict ``{forward argument: value}`` per call of
            that loss (one call; one per level when the binding has ``levels``).
        """
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.distill_losses]
        if unknown:
            raise KeyError(f'collect_loss_inputs: no distill loss named {unknown}; the '
                           f'distiller has {list(self.distill_losses)}.')
        if not self.teacher_loaded:
            raise RuntimeError(
                'the teacher weights are not loaded: call model.init_weights() (the '
                'runner does this when training starts) before collecting loss inputs.')
        captured: Dict[str, List[dict]] = {name: [] for name in names}
        handles = [
            self.distill_losses[name].loss.register_forward_pre_hook(
                lambda module, args, kwargs, n=name: captured[n].append(dict(kwargs)),
                with_kwargs=True) for name in names
        ]
        was_training = self.training
        self.eval()
        try:
            data = self.data_preprocessor(data_batch, True)
            inputs, data_samples = data['inputs'], data['data_samples']
            step = DistillStep(inputs, data_samples)
            with self.teacher_precision.mmcv_ops_context():
                self._student_loss(inputs, data_samples)
                with self.teacher_recorder.recording():
                    self._run_teacher(step)
                fetch = lambda source: self._fetch(step, source)  # noqa: E731
                for name in names:
                    self.distill_losses[name](fetch, 1.0)
        finally:
            for handle in handles:
                handle.remove()
            self.train(was_training)
            self._release_step()
        return captured

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper) -> Dict[str, Tensor]:
        """MMEngine's train step, guarded: the distill losses are checked for NaN/inf
        (one device sync for all of them, next to the one the logger makes anyway)
        before anything is updated; see ``nonfinite``."""
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode='loss')
        parsed_losses, log_vars = self.parse_losses(losses)
        distill = {k: v for k, v in losses.items()
                   if k.startswith('distill.loss_') and torch.is_tensor(v)}
        if distill and not bool(torch.stack([v.detach().float().sum()
                                             for v in distill.values()]).isfinite().all()):
            bad = [k for k, v in distill.items() if not torch.isfinite(v).all()]
            where = f'iteration {self.progress[0]}' if self.progress else 'this step'
            if self.nonfinite == 'raise':
                raise FloatingPointError(
                    f'{", ".join(bad)} is not finite at {where}; the step was not applied. '
                    "Lower the loss weight or its warm-up, or set model.nonfinite='skip' "
                    'to drop such steps.')
            optim_wrapper.zero_grad()
            self.skipped_steps += 1
            print_log(f'mmkd: skipped the step at {where}: {", ".join(bad)} not finite '
                      f'({self.skipped_steps} skipped so far)', logger='current',
                      level=logging.WARNING)
            return {k: v for k, v in log_vars.items() if not k.startswith('distill.')}
        optim_wrapper.update_params(parsed_losses)
        return log_vars

    # ---------------------------------------------------------------- inference
    def predict(self, inputs: Tensor, data_samples: Optional[List] = None) -> List:
        if self._predict_with_teacher:
            with self.teacher_precision.mmcv_ops_context():
                results = self.teacher.predict(self.teacher_input(inputs), data_samples)
            return self.teacher_precision.to_fp32(results)
        return self.student.predict(inputs, data_samples)

    def _forward(self, inputs: Tensor, data_samples: Optional[List] = None) -> Any:
        return self.student._forward(inputs, data_samples)

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[List] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], List, Any]:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor '
                           'mode')

    def _check_compatible(self) -> None:
        """Task-specific build-time checks of student vs teacher (class counts...)."""
