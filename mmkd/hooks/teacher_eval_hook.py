"""Evaluates the teacher once before training, so a teacher that did not load is
caught at minute one rather than after a day of training."""
import hashlib
import json
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmkd.registry import HOOKS


@HOOKS.register_module()
class TeacherEvalHook(Hook):
    """Run the validation set through the teacher before the first training iteration
    and log its metrics as ``teacher/<metric>``.

    Many students are usually distilled from one teacher: the metrics are kept next to
    the teacher checkpoint (``<teacher_ckpt>.eval.json``, with the checkpoint's and the
    validation annotations' size and modification time, the teacher's architecture,
    precision and test settings and the test pipeline) and a later run with the same teacher on the same validation set
    reads them instead of evaluating again. Where that file cannot be written
    (read-only storage), every run evaluates.

    Args:
        min_score (float, optional): if given, training stops with an error when the
            first metric (e.g. ``coco/bbox_mAP``) is below it — a teacher scoring ~0 was
            almost certainly not loaded (wrong checkpoint, wrong classes).
        reuse (bool): read / write the metrics file next to the checkpoint (default).
    """

    priority = 'LOW'

    def __init__(self, min_score: Optional[float] = None, reuse: bool = True) -> None:
        self.min_score = min_score
        self.reuse = reuse

    def before_train(self, runner) -> None:
        if runner.val_loop is None or runner.iter > 0:
            return  # nothing to evaluate on, or a resumed run (evaluated already)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        loop = runner.val_loop
        record = _record_file(model) if self.reuse else None
        stamp = _evaluation_key(model, loop.dataloader.dataset) if record else None
        metrics = _read_metrics(record, stamp) if record else None
        if metrics is None:
            metrics = self._evaluate(runner, model, loop)
            if record:
                _write_metrics(record, stamp, metrics)
        else:
            runner.logger.info(f'mmkd: the teacher\'s evaluation on this validation set '
                               f'is read from {record} (same checkpoint, same data)')
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

    @staticmethod
    def _evaluate(runner, model, loop) -> dict:
        runner.model.eval()
        with model.predicting_with_teacher(), torch.no_grad():
            for data_batch in loop.dataloader:
                outputs = runner.model.val_step(data_batch)
                loop.evaluator.process(data_samples=outputs, data_batch=data_batch)
        metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
        runner.model.train()
        return metrics


def _file_stamp(path) -> Optional[list]:
    if not isinstance(path, str) or not osp.isfile(path):
        return None
    stat = os.stat(path)
    return [osp.realpath(path), stat.st_size, stat.st_mtime_ns]


def _record_file(model) -> Optional[str]:
    """``<teacher_ckpt>.eval.json`` for a local checkpoint file, else ``None``."""
    ckpt = getattr(model, 'teacher_ckpt', None)
    return ckpt + '.eval.json' if _file_stamp(ckpt) else None


def _evaluation_key(model, dataset) -> str:
    """What the teacher's metrics depend on: its checkpoint file, architecture, precision
    and test settings, and the validation set (annotation file, size, test pipeline)."""
    teacher = model.teacher
    params = teacher.parameters() if hasattr(teacher, 'parameters') else iter(())
    described = (repr(teacher) + repr(getattr(teacher, 'test_cfg', None)) +
                 repr(next((p.dtype for p in params), None)))
    parts = dict(checkpoint=_file_stamp(model.teacher_ckpt),
                 teacher=hashlib.sha256(described.encode()).hexdigest(),
                 dataset=[type(dataset).__name__, len(dataset),
                          _file_stamp(getattr(dataset, 'ann_file', None)),
                          repr(getattr(dataset, 'pipeline', None))])
    return json.dumps(parts, sort_keys=True, default=str)


def _read_metrics(record: str, key: str) -> Optional[dict]:
    try:
        with open(record) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get('key') != key:
        return None
    return saved.get('metrics')


def _write_metrics(record: str, key: str, metrics: dict) -> None:
    tmp = f'{record}.{os.getpid()}.tmp'
    try:  # atomic: runs started side by side may both write it
        with open(tmp, 'w') as f:
            json.dump(dict(key=key, metrics=metrics), f, default=float)
        os.replace(tmp, record)
    except OSError:
        pass  # read-only next to the checkpoint: the next run evaluates again
