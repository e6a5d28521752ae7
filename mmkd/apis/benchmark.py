"""Measure what distillation costs per training step, and whether memory stays flat.

**Time.** Three variants are timed on the same batch, interleaved (A, B, C, A, B, C,
...), each step re-seeded so that two-stage samplers draw the same RoIs, after one
warm-up step:

* ``student``: the student alone — forward with its losses, backward, optimizer step;
* ``teacher``: the teacher's forward alone, as far as the distiller runs it (no grad);
* ``distill``: the distiller's full step — student, teacher, distill losses, backward, step.

The distillation overhead is ``distill / (student + teacher)``: 1.0 means the losses,
connectors and bookkeeping cost nothing beyond running both networks (the *floor*).

**Config variants** (:class:`ConfigVariant`) are the same config with
``--cfg-options``-style overrides, e.g. ``hash_bf16`` sets ``hash_dtype='bf16'`` on every
``DenseLSHLoss``. A variant's distiller is built next to the plain one, with the same
student, loss and teacher weights, and its ``teacher`` and ``distill`` steps join the
interleaving (keys ``'teacher:<name>'``, ``'distill:<name>'``); its overhead is always
taken against the plain config's **fp32 floor**, ``student + teacher`` (so a reduced-
precision teacher must bring the whole distilled step below the floor to reach < 1.0).

**Peak memory** (:func:`peak_memory`): on CUDA ``torch.cuda.max_memory_allocated`` during
the steps of one variant; on CPU the peak growth of the process's resident set from the
built model through the steps (activations, gradients, optimizer state; sampled every
2 ms, in a fresh process per variant; CPU allocations are not tracked by torch), so it
includes allocator caching and may miss very short peaks. The *extra* memory of
distillation is ``distill − student − teacher``.

**Flat memory** (:func:`rss_over_iterations`): many training steps of the distiller
(``train_step``, as the runner calls it); the resident set and the number of live tensors
after a warm-up and at the end. Nothing of one step may survive into the next.

**Goals** (:func:`goals_for`): the targets of issue 14, per row (see :data:`GOAL_TEXT`).
"""
import ast
import copy
import gc
import inspect
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

VARIANTS = ('student', 'teacher', 'distill')
ImageShape = Union[int, Tuple[int, int]]


# ------------------------------------------------------------------------ config variants
@dataclass(frozen=True)
class ConfigVariant:
    """A named set of overrides of a distillation config.

    Attributes:
        name (str): a short name (``[A-Za-z0-9_.-]``), used in the table and as key suffix.
        options (dict): ``--cfg-options``-style dotted keys relative to the config root
            (``'model.teacher_dtype'``) -> value; or empty when ``resolve`` computes them.
        resolve (callable, optional): ``cfg -> options or None`` (None: the variant does
            not apply to this config, e.g. no ``DenseLSHLoss`` in it, or the option is not
            supported by the installed mmkd).
        description (str): one line for the docs.
    """
    name: str
    options: Dict[str, Any] = field(default_factory=dict)
    resolve: Optional[Callable[[Config], Optional[Dict[str, Any]]]] = None
    description: str = ''

    def options_for(self, cfg: Config) -> Optional[Dict[str, Any]]:
        """The overrides for ``cfg``, or ``None`` where the variant does not apply (an
        explicit option whose parent key is missing from the config does not apply)."""
        if self.resolve is not None:
            return self.resolve(cfg)
        for key in self.options:
            parent = key.rpartition('.')[0]
            if parent and not _has_key(cfg, parent):
                return None
        return dict(self.options)


def _has_key(cfg: Any, dotted: str) -> bool:
    node = cfg._cfg_dict if isinstance(cfg, Config) else cfg
    for part in dotted.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_variant(text: str) -> ConfigVariant:
    """``'NAME:key=value[,key=value...]'`` (values as Python literals, else strings), or a
    built-in name (see :data:`BUILTIN_VARIANTS`)."""
    name, sep, rest = text.partition(':')
    if not sep:
        if name in BUILTIN_VARIANTS:
            return BUILTIN_VARIANTS[name]
        raise ValueError(f'variant {text!r}: use NAME:key=value[,key=value] or one of the '
                         f'built-in variants {sorted(BUILTIN_VARIANTS)}')
    if not name or not all(c.isalnum() or c in '_.-' for c in name):
        raise ValueError(f'variant {text!r}: the name before ":" must be non-empty '
                         'letters, digits, "_", "-" or "."')
    options = {}
    for item in rest.split(','):
        key, eq, value = item.partition('=')
        if not eq or not key.strip():
            raise ValueError(f'variant {text!r}: {item!r} is not key=value '
                             '(e.g. model.distill_losses.lsh.loss.hash_dtype=bf16)')
        options[key.strip()] = _parse_value(value.strip())
    return ConfigVariant(name, options, description=rest)


def _accepts(registry_type: Any, argument: str) -> bool:
    """Whether ``registry_type(argument=...)`` is accepted: its ``__init__`` names it, or
    passes ``**kwargs`` on to a base class whose ``__init__`` does."""
    for klass in getattr(registry_type, '__mro__', (registry_type, )):
        try:
            params = inspect.signature(klass.__init__).parameters
        except (TypeError, ValueError):
            return False
        if argument in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return False


def _loss_types(cfg: Config) -> Dict[str, str]:
    """distill loss name -> loss type of a distillation config."""
    losses = cfg.model.get('distill_losses') or {}
    return {name: b.get('loss', {}).get('type', '') for name, b in losses.items()}


def _hash_bf16(cfg: Config) -> Optional[Dict[str, Any]]:
    from mmkd.registry import MODELS
    names = [n for n, t in _loss_types(cfg).items() if t == 'DenseLSHLoss']
    loss_type = MODELS.get('DenseLSHLoss')
    if not names or loss_type is None or not _accepts(loss_type, 'hash_dtype'):
        return None
    return {f'model.distill_losses.{n}.loss.hash_dtype': 'bf16' for n in names}


def _teacher_bf16(cfg: Config) -> Optional[Dict[str, Any]]:
    from mmdet.registry import MODELS
    distiller = MODELS.get(cfg.model.get('type', ''))
    if distiller is None or not _accepts(distiller, 'teacher_dtype'):
        return None
    return {'model.teacher_dtype': 'bf16'}


#: variants known by name (``--variants NAME ...``): they apply only where they make sense
BUILTIN_VARIANTS: Dict[str, ConfigVariant] = {
    'hash_bf16': ConfigVariant('hash_bf16', resolve=_hash_bf16,
                               description="hash_dtype='bf16' on every DenseLSHLoss"),
    'teacher_bf16': ConfigVariant('teacher_bf16', resolve=_teacher_bf16,
                                  description="teacher_dtype='bf16' (the teacher's forward "
                                  'in bfloat16)'),
}


def _is_low_precision(value: Any) -> bool:
    return value not in (None, 'fp32', 'float32', torch.float32)


# ------------------------------------------------------------------------ goals
@dataclass(frozen=True)
class Goal:
    """A target for one measured figure of a row.

    Attributes:
        metric (str): ``'overhead'`` (distilled / fp32 floor) or ``'extra_mib'`` (peak
            memory distilled − student − teacher, MiB).
        limit (float): the bound.
        strict (bool): ``<`` instead of ``≤``.
    """
    metric: str
    limit: float
    strict: bool = False

    def text(self) -> str:
        op = '<' if self.strict else '≤'
        if self.metric == 'overhead':
            return f'{op} {self.limit:.2f}×'
        return f'extra {op} {self.limit / 1024:.1f} GiB'

    def met(self, value: Optional[float]) -> Optional[bool]:
        if value is None:
            return None
        return value < self.limit if self.strict else value <= self.limit


#: the goals of issue 14, as the docs state them
GOAL_TEXT = (
    'dense LSH (RetinaNet) exact fp32 ≤ 2.00×, with bf16 hashing ≤ 1.50× (≤ 1.10× on a '
    'GPU at full size); FCFD Faster R-CNN ≤ 1.50×; FCFD RetinaNet ≤ 1.30×; every other '
    'FPN / RoI loss ≤ 1.05×; with the low-precision teacher the distilled step below the '
    'fp32 floor (< 1.00×); at full size (1333×800, batch 2) the dense LSH extra memory '
    '≤ 0.3 GiB')


def goals_for(cfg: Config, options: Optional[Dict[str, Any]] = None, device: str = 'cpu',
              full: bool = False) -> List[Goal]:
    """The goals of one row: ``cfg`` (plain) with the variant ``options`` applied.

    * a low-precision teacher (``*.teacher_dtype`` not fp32): overhead < 1.00;
    * ``DenseLSHLoss``: ≤ 2.00, with a low-precision ``hash_dtype`` ≤ 1.50 (≤ 1.10 with
      ``device='cuda'`` at ``full`` size); at ``full`` size also extra memory ≤ 0.3 GiB;
    * ``FCFDRoILoss`` ≤ 1.50; ``FCFDDenseLoss`` ≤ 1.30; any other loss ≤ 1.05.

    A config with several losses gets the loosest overhead bound of its losses.
    """
    options = options or {}
    if any(k.endswith('teacher_dtype') and _is_low_precision(v) for k, v in options.items()):
        return [Goal('overhead', 1.0, strict=True)]
    low_hash = any(k.endswith('hash_dtype') and _is_low_precision(v)
                   for k, v in options.items())
    limits, goals = [], []
    for loss_type in _loss_types(cfg).values():
        if loss_type == 'DenseLSHLoss':
            limits.append((1.10 if device.startswith('cuda') and full else 1.50)
                          if low_hash else 2.00)
            if full and not low_hash:
                goals.append(Goal('extra_mib', 0.3 * 1024))
        elif loss_type == 'FCFDRoILoss':
            limits.append(1.50)
        elif loss_type == 'FCFDDenseLoss':
            limits.append(1.30)
        else:
            limits.append(1.05)
    return [Goal('overhead', max(limits or [1.05]))] + goals


# ------------------------------------------------------------------------ building
def make_batch(model, batch_size: int, img_size: ImageShape, num_classes: int,
               seed: int = 0, preprocess: bool = True):
    """A training batch of random images (``img_size``: side or ``(h, w)``) with 4 random
    boxes each; preprocessed by ``model.data_preprocessor`` unless ``preprocess=False``
    (then as a dataloader yields it, for ``train_step``)."""
    from mmdet.testing import demo_mm_inputs
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    torch.manual_seed(seed)
    packed = demo_mm_inputs(batch_size, [[3, h, w]] * batch_size,
                            num_classes=num_classes, num_items=[4] * batch_size)
    return model.data_preprocessor(packed, True) if preprocess else packed


@contextmanager
def quiet_init_logs() -> Iterator[None]:
    """Silence MMEngine's per-parameter weight-initialisation report (INFO) while the
    variants are built; warnings still show."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_config(config: Union[str, Config], options: Optional[Dict[str, Any]] = None
                ) -> Config:
    """The config (a path or a ``Config``, copied) with ``options`` merged, its student
    and teacher inlined and every pretrained-weight init removed."""
    from mmkd.testing.tiny_config import inline_model_configs, strip_pretrained
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if options:
        cfg.merge_from_dict(options)
    inline_model_configs(cfg.model)
    strip_pretrained(cfg.model)  # a ConfigDict (the Config object itself is no dict)
    return cfg


def build_distiller(cfg: Config, device: str, scratch: str,
                    teacher_ckpt: Optional[str] = None):
    """The distiller of ``cfg`` (from :func:`load_config`); teacher weights random (a
    checkpoint under ``scratch``, one per teacher config) unless ``teacher_ckpt``, and,
    for ND, a random class-means table of the right shape. Seeded: the same config gives
    the same student and loss weights."""
    from mmdet.registry import MODELS
    from mmkd.testing.tiny_config import RandomCheckpointCache, random_class_means
    model_cfg = copy.deepcopy(cfg.model)
    with quiet_init_logs():
        # random weights cost the same as trained ones
        model_cfg.teacher_ckpt = teacher_ckpt or RandomCheckpointCache(scratch).get(
            model_cfg.teacher)
        random_class_means(model_cfg, scratch)
        torch.manual_seed(0)
        distiller = MODELS.build(model_cfg)
        distiller.init_weights()
    return distiller.to(device)


def build_variants(config: Union[str, Config], device: str,
                   teacher_ckpt: Optional[str] = None,
                   variants: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict:
    """Build the distiller of ``config``, a separate copy of its student and one distiller
    per entry of ``variants`` (name -> options), all with the same student / loss / teacher
    weights. Returns ``dict(cfg, distiller, student, variants={name: distiller})``."""
    from mmdet.registry import MODELS
    cfg = load_config(config)
    scratch = tempfile.mkdtemp(prefix='mmkd_benchmark_')
    distiller = build_distiller(cfg, device, scratch, teacher_ckpt)
    with quiet_init_logs():
        student = MODELS.build(copy.deepcopy(cfg.model.student)).to(device)
    student.load_state_dict(distiller.student.state_dict())
    built = {}
    for name, options in (variants or {}).items():
        other = build_distiller(load_config(config, options), device, scratch, teacher_ckpt)
        _copy_matching(other, distiller)
        built[name] = other
    return dict(cfg=cfg, distiller=distiller, student=student, variants=built)


def _copy_matching(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    """Copy every state-dict entry of ``src`` that ``dst`` has with the same shape
    (student, connectors, loss buffers; a variant may add or drop some)."""
    target = dst.state_dict()
    dst.load_state_dict({k: v for k, v in src.state_dict().items()
                         if k in target and target[k].shape == v.shape}, strict=False)


# ------------------------------------------------------------------------ one step
def _optim_wrapper(model: torch.nn.Module, amp: bool):
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    return AmpOptimWrapper(optimizer=optimizer) if amp else OptimWrapper(optimizer)


def _training_step(model, wrapper, inputs, samples) -> None:
    with wrapper.optim_context(model):  # autocast under AmpOptimWrapper
        loss, _ = model.parse_losses(model.loss(inputs, copy.deepcopy(samples)))
    wrapper.update_params(loss)  # (scaled) backward, step, zero_grad


def _teacher_step_fn(distiller, inputs, samples, wrapper) -> Callable[[], None]:
    from mmkd.models.distillers.base_distiller import DistillStep

    precision = getattr(distiller, 'teacher_precision', None)  # a low-precision teacher

    def ops_context():
        return precision.mmcv_ops_context() if precision is not None else nullcontext()

    def run() -> None:
        step = DistillStep(inputs, samples)
        with torch.no_grad(), wrapper.optim_context(distiller), ops_context(), \
                distiller.teacher_recorder.recording():
            distiller._run_teacher(step)
        if hasattr(distiller, '_release_step'):
            distiller._release_step()

    def prepare() -> None:
        if getattr(distiller, '_uses_roi', False):
            # RoI sources run the teacher head on the student's sampled RoIs: sample them
            # first (not timed)
            with torch.no_grad(), wrapper.optim_context(distiller), ops_context():
                distiller._student_loss(inputs, copy.deepcopy(samples))

    run.prepare = prepare
    return run


def step_functions(models: Dict, batch, amp: bool = False) -> Dict[str, Callable[[], float]]:
    """Each function runs one step of its variant and returns its duration (s): keys
    ``student``, ``teacher``, ``distill`` and, per config variant, ``teacher:<name>``,
    ``distill:<name>``. With ``amp`` the steps run under mmengine's ``AmpOptimWrapper``
    (fp16 autocast, scaled backward), as ``tools/train.py --amp`` does."""
    inputs, samples = batch['inputs'], batch['data_samples']
    device = inputs.device
    models['student'].train()
    distillers = {'': models['distiller'], **models.get('variants', {})}
    fns: Dict[str, Callable[[], None]] = {}
    wrapper_s = _optim_wrapper(models['student'], amp)
    fns['student'] = lambda: _training_step(models['student'], wrapper_s, inputs, samples)
    for name, distiller in distillers.items():
        distiller.train()
        wrapper = _optim_wrapper(distiller, amp)
        suffix = f':{name}' if name else ''
        fns['teacher' + suffix] = _teacher_step_fn(distiller, inputs, samples, wrapper)
        fns['distill' + suffix] = \
            lambda d=distiller, w=wrapper: _training_step(d, w, inputs, samples)

    def timed(fn: Callable[[], None]) -> Callable[[], float]:
        def run() -> float:
            if hasattr(fn, 'prepare'):
                fn.prepare()
            start = _now(device)
            fn()
            return _elapsed(start, device)
        return run

    return {key: timed(fn) for key, fn in fns.items()}


def _now(device: torch.device):
    if device.type == 'cuda':
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def _elapsed(start, device: torch.device) -> float:
    if device.type == 'cuda':
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000.0
    return time.perf_counter() - start


# ------------------------------------------------------------------------ time
def time_variants(config: str, steps: int = 5, batch_size: int = 8,
                  img_size: ImageShape = 128, device: str = 'cpu',
                  teacher_ckpt: Optional[str] = None,
                  variants: Optional[Dict[str, Dict[str, Any]]] = None,
                  amp: bool = False) -> Dict[str, float]:
    """Median seconds per training step of each variant, interleaved, re-seeded, after
    one warm-up step. Keys: ``student``, ``teacher``, ``distill`` and, for each entry of
    ``variants`` (name -> config options), ``teacher:<name>`` and ``distill:<name>``."""
    models = build_variants(config, device, teacher_ckpt, variants)
    batch = make_batch(models['distiller'], batch_size, img_size, _num_classes(models['cfg']))
    fns = step_functions(models, batch, amp)
    times: Dict[str, List[float]] = {key: [] for key in fns}
    for i in range(steps + 1):
        for key, fn in fns.items():
            torch.manual_seed(i)
            seconds = fn()
            if i > 0:  # step 0 is the warm-up
                times[key].append(seconds)
    return {key: statistics.median(t) for key, t in times.items()}


def overhead(times: Dict[str, float], variant: str = '') -> float:
    """``distill[:variant] / (student + teacher)``, always against the plain (fp32) floor."""
    key = f'distill:{variant}' if variant else 'distill'
    return times[key] / (times['student'] + times['teacher'])


# ------------------------------------------------------------------------ memory
def peak_memory(config: str, variant: str, steps: int = 2, batch_size: int = 8,
                img_size: ImageShape = 128, device: str = 'cpu',
                options: Optional[Dict[str, Any]] = None, amp: bool = False) -> float:
    """Peak memory (MiB) of ``steps`` training steps of one of ``student``, ``teacher``,
    ``distill`` (see the module doc), of ``config`` with ``options`` merged."""
    models = build_variants(load_config(config, options), device)
    batch = make_batch(models['distiller'], batch_size, img_size, _num_classes(models['cfg']))
    fn = step_functions(models, batch, amp)[variant]
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    gc.collect()
    with _RssSampler() as sampler:  # from the built model: activations, grads, optimizer
        for _ in range(steps):
            fn()
    return sampler.peak_growth_mib


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class _RssSampler:
    """Samples the process's resident set size (``/proc/self/statm``) every few ms in a
    thread; ``peak_growth_mib`` is the highest RSS seen minus the RSS at the start."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = self.start = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> '_RssSampler':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def peak_growth_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def peak_memory_in_subprocess(config: str, variant: str, device: str, batch_size: int,
                              img_size: ImageShape, options: Optional[Dict[str, Any]] = None,
                              amp: bool = False, steps: int = 2) -> float:
    """:func:`peak_memory` in a fresh interpreter, so that earlier variants' peaks do not
    hide this one's."""
    code = ('import sys, mmkd; from mmkd.apis.benchmark import peak_memory; '
            f'print(peak_memory({config!r}, {variant!r}, steps={steps}, '
            f'batch_size={batch_size}, img_size={img_size!r}, device={device!r}, '
            f'options={options!r}, amp={amp!r}))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=dict(os.environ))
    if out.returncode != 0:
        raise RuntimeError(f'peak memory of {config} ({variant}) failed:\n'
                           f'{out.stderr[-3000:]}')
    return float(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------ flat memory
def live_tensors() -> Tuple[int, float]:
    """(number, MiB) of the tensors the garbage collector can see (parameters, buffers,
    optimizer state and anything else alive), after a collection."""
    gc.collect()
    count, size = 0, 0
    with warnings.catch_warnings():  # isinstance() on deprecated module attributes
        warnings.simplefilter('ignore')
        for obj in gc.get_objects():
            try:
                if torch.is_tensor(obj):
                    count += 1
                    size += obj.numel() * obj.element_size()
            except ReferenceError:  # dead weak proxies
                continue
    return count, size / 2**20


def rss_over_iterations(config: str, iters: int = 1000, warmup: Optional[int] = None,
                        batch_size: int = 2, img_size: ImageShape = 128,
                        device: str = 'cpu', options: Optional[Dict[str, Any]] = None,
                        log: Optional[Callable[[str], None]] = None) -> Dict[str, float]:
    """Run ``iters`` training steps of the distiller of ``config`` the way the runner
    does (``set_progress``, ``train_step`` with an ``OptimWrapper``, a fresh copy of the
    batch each iteration) and report its memory after ``warmup`` steps (default
    ``max(10, iters // 10)``) and at the end.

    Returns:
        dict: ``rss_warmup_mib``, ``rss_half_mib`` (after ``iters // 2`` steps),
        ``rss_end_mib``, ``rss_max_mib`` (highest RSS seen after the warm-up, read once per
        step), ``growth_mib`` (end − warm-up), ``late_growth_mib`` (end − half: a leak grows
        all along, the allocator's high-water mark settles once), ``tensors_warmup`` /
        ``tensors_end`` (live tensors, see :func:`live_tensors`) and ``tensor_mib_warmup`` /
        ``tensor_mib_end``.
    """
    warmup = max(10, iters // 10) if warmup is None else warmup
    if not 0 < warmup < iters:
        raise ValueError(f'rss_over_iterations: warmup={warmup} must be in 1..iters-1 '
                         f'(iters={iters})')
    cfg = load_config(config, options)
    distiller = build_distiller(cfg, device, tempfile.mkdtemp(prefix='mmkd_benchmark_'))
    distiller.train()
    wrapper = _optim_wrapper(distiller, amp=False)
    data = make_batch(distiller, batch_size, img_size, _num_classes(cfg), preprocess=False)
    result: Dict[str, float] = {}
    for i in range(iters):
        distiller.set_progress(i, 0)
        distiller.train_step(copy.deepcopy(data), wrapper)
        if i + 1 == warmup:
            result['tensors_warmup'], result['tensor_mib_warmup'] = live_tensors()
            result['rss_warmup_mib'] = result['rss_max_mib'] = _rss_bytes() / 2**20
        elif i + 1 > warmup:
            result['rss_max_mib'] = max(result['rss_max_mib'], _rss_bytes() / 2**20)
        if i + 1 == max(iters // 2, warmup):
            result['rss_half_mib'] = _rss_bytes() / 2**20
        if log is not None and (i + 1) % max(1, iters // 10) == 0:
            log(f'  {i + 1}/{iters}: RSS {_rss_bytes() / 2**20:.0f} MiB')
    result['tensors_end'], result['tensor_mib_end'] = live_tensors()
    result['rss_end_mib'] = _rss_bytes() / 2**20
    result['growth_mib'] = result['rss_end_mib'] - result['rss_warmup_mib']
    result['late_growth_mib'] = result['rss_end_mib'] - result['rss_half_mib']
    return result


def _num_classes(cfg: Config) -> int:
    student = cfg.model.student
    head = student.get('roi_head', {}).get('bbox_head') or student.get('bbox_head')
    return int(head['num_classes'])
