"""Evaluates the teacher once before training, so a teacher that did not load is
caught at minute one rather than after a day of training."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmkd.registry import HOOKS


@HOOKS.register_module()
class TeacherEvalHook(Hook):
    """Run the validation set through the teacher before the first training iteration
    and log its metrics as ``teacher/<metric>``.

    Args:
        min_score (float, optional): if given, training stops with an error when the
            first metric (e.g. ``coco/bbox_mAP``) is below it — a teacher scoring ~0 was
            almost certainly not loaded (wrong checkpoint, wrong classes).
    """

    priority = 'LOW'

    def __init__(self, min_score: Optional[float] = None) -> None:
        self.min_score = min_score

    def before_train(self, runner) -> None:
        if runner.val_loop is None or runner.iter > 0:
            return  # nothing to evaluate on, or a resumed run (evaluated already)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        loop = runner.val_loop
        runner.model.eval()
        with model.predicting_with_teacher(), torch.no_grad():
            for data_batch in loop.dataloader:
                outputs = runner.model.val_step(data_batch)
                loop.evaluator.process(data_samples=outputs, data_batch=data_batch)
        metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
        runner.model.train()
        shown = ', '.join(f'teacher/{k}: {v:.4f}' if isinstance(v, float) else
                          f'teacher/{k}: {v}' for k, v in metrics.items())
        runner.logger.info(f'mmkd: teacher evaluated before training: {shown}')
        for key, value in metrics.items():
            runner.message_hub.update_info(f'teacher/{key}', value)
        # A teacher that detects nothing makes CocoMetric return no metrics at all.
        first_key, first = next(iter(metrics.items())) if metrics else ('score', 0.0)
        if not first:
            runner.logger.warning(
                f'mmkd: the teacher scores {first_key}={first} before training: was '
                'model.teacher_ckpt trained with this config and these classes?')
        if self.min_score is not None and first < self.min_score:
            raise RuntimeError(
                f'teacher scores {first_key}={first:.4f}, below min_score='
                f'{self.min_score}: is model.teacher_ckpt the right checkpoint for '
                'model.teacher (same classes, same dataset)?')
