"""What reduced precision changes in what the losses see, on real training batches.

Two opt-in speed options trade exactness for cost; this measures the trade:

* ``teacher_dtype='bf16'`` (a low-precision teacher): the relative error
  ``‖x_bf16 − x_fp32‖ / ‖x_fp32‖`` of every teacher-side tensor each distill loss receives;
* ``hash_dtype='bf16'`` (:class:`~mmkd.models.losses.DenseLSHLoss`): the fraction of the
  teacher's hash bits ``1[W f_t + b > 0]``, over the kept locations, that differ from the
  fp32 projection's.

Both run the distiller's own step (:meth:`BaseDistiller.collect_loss_inputs`) on batches of
the config's training set, with the given teacher checkpoint.
"""
import copy
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import Tensor

from .benchmark import quiet_init_logs


def _tensors(value) -> List[Tensor]:
    if torch.is_tensor(value):
        return [value] if value.is_floating_point() else []
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def build_distiller(cfg: Config, teacher_ckpt: str, teacher_dtype: Optional[str] = None):
    """The config's distiller with ``teacher_ckpt``, initialised (seed 0), in train mode."""
    from mmdet.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.teacher_ckpt = teacher_ckpt
    model_cfg.teacher_dtype = teacher_dtype
    torch.manual_seed(0)
    with quiet_init_logs():
        model = MODELS.build(model_cfg)
        model.init_weights()
    return model.train()


def training_batches(cfg: Config, num_batches: int) -> Iterable[dict]:
    """The first ``num_batches`` batches of the config's train dataloader (no workers)."""
    from mmengine.runner import Runner
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.num_workers = 0
    loader_cfg.persistent_workers = False
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    for index, batch in enumerate(loader):
        if index >= num_batches:
            break
        yield batch


def teacher_dtype_errors(cfg: Config, teacher_ckpt: str, dtype: str = 'bf16',
                         num_batches: int = 4) -> Dict[str, float]:
    """``'<loss>.<argument>'`` → relative error (all batches, levels and calls pooled) of
    the teacher-side inputs of each distill loss with a ``dtype`` teacher."""
    exact = build_distiller(cfg, teacher_ckpt)
    low = build_distiller(cfg, teacher_ckpt, dtype)
    low.load_state_dict(exact.state_dict())
    names = list(exact.distill_losses)
    diff: Dict[str, float] = {}
    norm: Dict[str, float] = {}
    for batch in training_batches(cfg, num_batches):
        calls = []
        for model in (exact, low):
            torch.manual_seed(0)  # the same RoI sampling on both
            calls.append(model.collect_loss_inputs(copy.deepcopy(batch), names))
        for name in names:
            for call32, call16 in zip(calls[0][name], calls[1][name]):
                for arg, value in call32.items():
                    if not arg.startswith('teacher'):
                        continue
                    for a, b in zip(_tensors(value), _tensors(call16[arg])):
                        key = f'{name}.{arg}'
                        diff[key] = diff.get(key, 0.0) + float((a - b).float().pow(2).sum())
                        norm[key] = norm.get(key, 0.0) + float(a.float().pow(2).sum())
    return {k: (diff[k] / norm[k]) ** 0.5 if norm[k] > 0 else 0.0 for k in diff}


def hash_bit_flips(cfg: Config, teacher_ckpt: str, num_batches: int = 4) -> Dict[str, float]:
    """For every :class:`DenseLSHLoss` of the config: the fraction of teacher hash bits
    over the kept locations that ``hash_dtype='bf16'`` flips relative to fp32."""
    from mmkd.models.losses import DenseLSHLoss
    from mmkd.models.losses.dense_lsh_loss import bf16_bit_flips
    model = build_distiller(cfg, teacher_ckpt)
    names = [n for n, b in model.distill_losses.items() if isinstance(b.loss, DenseLSHLoss)]
    flipped = {n: 0.0 for n in names}
    counted = {n: 0.0 for n in names}
    for batch in training_batches(cfg, num_batches):
        calls = model.collect_loss_inputs(batch, names) if names else {}
        for name in names:
            loss = model.distill_losses[name].loss
            for call in calls[name]:
                flips, total = bf16_bit_flips(call['teacher_feat'], loss.projection.weight,
                                              loss.projection.bias, call.get('mask'))
                flipped[name] += float(flips)
                counted[name] += float(total)
    return {n: flipped[n] / counted[n] if counted[n] else 0.0 for n in names}


__all__ = ['teacher_dtype_errors', 'hash_bit_flips', 'build_distiller', 'training_batches']
