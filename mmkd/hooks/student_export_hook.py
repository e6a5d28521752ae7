"""Writes a student-only checkpoint beside every checkpoint the runner saves."""
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mmkd.registry import HOOKS
from mmkd.utils.export import export_student


def student_path(checkpoint_path: str) -> str:
    """``work_dir/epoch_12.pth`` -> ``work_dir/epoch_12_student.pth``."""
    root, ext = osp.splitext(checkpoint_path)
    return f'{root}_student{ext or ".pth"}'


@HOOKS.register_module()
class StudentExportHook(Hook):
    """After the :class:`CheckpointHook` saves ``X.pth``, write ``X_student.pth`` (the
    student alone, loadable by stock ``mmdet`` ``tools/test.py`` with the student's own
    config). Runs after the checkpoint hook (lowest priority), on the main process."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._exported: Optional[str] = None

    def _export_new_checkpoint(self, runner) -> None:
        last = runner.message_hub.get_info('last_ckpt')
        if not last or last == self._exported or not is_main_process() \
                or not osp.isfile(last):
            return
        dst = export_student(last, student_path(last))
        self._exported = last
        runner.logger.info(f'mmkd: student-only checkpoint written to {dst}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._export_new_checkpoint(runner)

    def after_train_epoch(self, runner) -> None:
        self._export_new_checkpoint(runner)
