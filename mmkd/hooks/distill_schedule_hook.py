"""Feeds the runner's progress to the distiller's per-loss schedules."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmkd.registry import HOOKS


@HOOKS.register_module()
class DistillScheduleHook(Hook):
    """Before every training iteration, tell the distiller the current (0-based)
    iteration and epoch, from which each loss's :class:`LossSchedule` computes its
    weight factor. The counters are the runner's own, so ``--resume`` restores the
    schedules exactly."""

    priority = 'NORMAL'

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if hasattr(model, 'set_progress'):
            model.set_progress(runner.iter, runner.epoch)
