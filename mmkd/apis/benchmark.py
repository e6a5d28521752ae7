"""Measure what distillation costs per training step.

Three variants are timed on the same batch, interleaved (A, B, C, A, B, C, ...), each
step re-seeded so that two-stage samplers draw the same RoIs, after one warm-up step:

* ``student``: the student alone — forward with its losses, backward, optimizer step;
* ``teacher``: the teacher's forward alone, as far as the distiller runs it (no grad);
* ``distill``: the distiller's full step — student, teacher, distill losses, backward, step.

The distillation overhead is ``distill / (student + teacher)``: 1.0 means the losses,
connectors and bookkeeping cost nothing beyond running both networks.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the steps of each variant;
on CPU the peak growth of the process's resident set from the built model through the
steps (activations, gradients, optimizer state; sampled every 2 ms, in a fresh process per
variant; CPU allocations are not tracked by torch), so it includes allocator caching and
may miss very short peaks.
"""
import copy
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

VARIANTS = ('student', 'teacher', 'distill')


def make_batch(model, batch_size: int, img_size: int, num_classes: int, seed: int = 0):
    """A preprocessed training batch of random images with random boxes."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(seed)
    packed = demo_mm_inputs(batch_size, [[3, img_size, img_size]] * batch_size,
                            num_classes=num_classes, num_items=[4] * batch_size)
    return model.data_preprocessor(packed, True)


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


def build_variants(config: str, device: str, teacher_ckpt: Optional[str] = None) -> Dict:
    """Build the distiller of ``config`` (teacher weights random unless ``teacher_ckpt``)
    and a separate copy of its student; returns the step functions."""
    from mmdet.registry import MODELS
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmkd.testing.tiny_config import (RandomCheckpointCache, inline_model_configs,
                                          random_class_means, strip_pretrained)
    inline_model_configs(cfg.model)
    strip_pretrained(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    scratch = tempfile.mkdtemp(prefix='mmkd_benchmark_')
    with quiet_init_logs():
        # random weights cost the same as trained ones: a random teacher checkpoint and,
        # for ND, a random class-means table of the right shape, unless a teacher is given
        model_cfg.teacher_ckpt = teacher_ckpt or RandomCheckpointCache(scratch).get(
            model_cfg.teacher)
        random_class_means(model_cfg, scratch)
        distiller = MODELS.build(model_cfg)
        distiller.init_weights()
        distiller.to(device)
        student = MODELS.build(copy.deepcopy(cfg.model.student)).to(device)
    student.load_state_dict(distiller.student.state_dict())
    return dict(cfg=cfg, distiller=distiller, student=student)


def step_functions(models: Dict, batch) -> Dict[str, Callable[[], float]]:
    """Each function runs one step of its variant and returns its duration (s)."""
    distiller, student = models['distiller'], models['student']
    distiller.train()
    student.train()
    opt_s = torch.optim.SGD(student.parameters(), lr=1e-4, momentum=0.9)
    opt_d = torch.optim.SGD(distiller.parameters(), lr=1e-4, momentum=0.9)
    inputs, samples = batch['inputs'], batch['data_samples']
    device = inputs.device

    def total(losses: Dict) -> torch.Tensor:
        parts = [v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k]
        return sum(parts)

    def student_step() -> float:
        start = _now(device)
        opt_s.zero_grad()
        total(student.loss(inputs, copy.deepcopy(samples))).backward()
        opt_s.step()
        return _elapsed(start, device)

    def teacher_step() -> float:
        from mmkd.models.distillers.base_distiller import DistillStep
        step = DistillStep(inputs, samples)
        if getattr(distiller, '_uses_roi', False):
            # RoI sources run the teacher head on the student's sampled RoIs: sample them
            # first (not timed)
            with torch.no_grad():
                distiller._student_loss(inputs, copy.deepcopy(samples))
        start = _now(device)
        with torch.no_grad(), distiller.teacher_recorder.recording():
            distiller._run_teacher(step)
        return _elapsed(start, device)

    def distill_step() -> float:
        start = _now(device)
        opt_d.zero_grad()
        total(distiller.loss(inputs, copy.deepcopy(samples))).backward()
        opt_d.step()
        return _elapsed(start, device)

    return dict(student=student_step, teacher=teacher_step, distill=distill_step)


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


def time_variants(config: str, steps: int = 5, batch_size: int = 8, img_size: int = 128,
                  device: str = 'cpu', teacher_ckpt: Optional[str] = None) -> Dict[str, float]:
    """Median seconds per training step of each variant, interleaved."""
    models = build_variants(config, device, teacher_ckpt)
    num_classes = _num_classes(models['cfg'])
    batch = make_batch(models['distiller'], batch_size, img_size, num_classes)
    fns = step_functions(models, batch)
    times: Dict[str, List[float]] = {v: [] for v in VARIANTS}
    for i in range(steps + 1):
        for variant in VARIANTS:
            torch.manual_seed(i)
            seconds = fns[variant]()
            if i > 0:  # step 0 is the warm-up
                times[variant].append(seconds)
    return {v: statistics.median(t) for v, t in times.items()}


def peak_memory(config: str, variant: str, steps: int = 2, batch_size: int = 8,
                img_size: int = 128, device: str = 'cpu') -> float:
    """Peak memory (MiB) of ``steps`` training steps of one variant (see module doc)."""
    models = build_variants(config, device)
    batch = make_batch(models['distiller'], batch_size, img_size, _num_classes(models['cfg']))
    fn = step_functions(models, batch)[variant]
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with _RssSampler() as sampler:  # from the built model: activations, grads, optimizer
        for _ in range(steps):
            fn()
    return sampler.peak_growth_mib


class _RssSampler:
    """Samples the process's resident set size (``/proc/self/statm``) every few ms in a
    thread; ``peak_growth_mib`` is the highest RSS seen minus the RSS at the start."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.page = os.sysconf('SC_PAGE_SIZE')
        self.peak = self.start = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> '_RssSampler':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def peak_growth_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def peak_memory_in_subprocess(config: str, variant: str, device: str, batch_size: int,
                              img_size: int) -> float:
    """:func:`peak_memory` in a fresh interpreter, so that earlier variants' peaks do not
    hide this one's."""
    code = ('import sys, mmkd; from mmkd.apis.benchmark import peak_memory; '
            f'print(peak_memory({config!r}, {variant!r}, batch_size={batch_size}, '
            f'img_size={img_size}, device={device!r}))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=dict(os.environ), check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _num_classes(cfg: Config) -> int:
    student = cfg.model.student
    head = student.get('roi_head', {}).get('bbox_head') or student.get('bbox_head')
    return int(head['num_classes'])
