"""A test-only hook (imported through ``custom_imports`` by ``test_ddp.py``'s runs): before
and after training, every process writes what it holds — the distiller's state dict (student,
connectors, loss buffers) and the teacher's weights — to ``<work_dir>/rank<r>_{init,final}.pth``,
so the test can compare the ranks (a checkpoint only has rank 0's)."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankStateDumpHook(Hook):
    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        self._dump(runner, 'init')

    def after_train(self, runner) -> None:
        self._dump(runner, 'final')

    def _dump(self, runner, when: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state.update({f'teacher.{k}': v.detach().cpu().clone()
                      for k, v in model.teacher.state_dict().items()})
        state['teacher_training'] = torch.tensor(
            [m.training for m in model.teacher.modules()]).any()
        torch.save(state, osp.join(runner.work_dir, f'rank{get_rank()}_{when}.pth'))
