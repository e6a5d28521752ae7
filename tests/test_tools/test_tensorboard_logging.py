"""The distill losses and their terms in TensorBoard (MMEngine's TensorboardVisBackend),
as a user gets them by adding the backend to the visualizer."""
import glob
import json

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from helpers import load_config, repo_path, save_random_checkpoint

pytest.importorskip('tensorboard', reason='tensorboard is pinned in the Makefile (make env)')

FCFD = 'configs/fcfd/fcfd_retinanet_r18_r18w16_fpn_synth.py'  # a loss with named terms
TEACHER = 'configs/synthetic/retinanet_r18_fpn_teacher_synth.py'


def test_distill_losses_and_terms_reach_tensorboard(tiny_det_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    teacher = save_random_checkpoint(Config.fromfile(repo_path(TEACHER)).model,
                                     str(tmp_path / 'teacher.pth'))
    cfg = load_config(FCFD, tiny_det_data, str(tmp_path / 'work'), max_iters=2,
                      **{'model.teacher_ckpt': teacher})
    cfg.train_cfg.val_interval = 100  # no evaluation
    cfg.custom_hooks = [dict(type='DistillScheduleHook')]
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend'),
                                   dict(type='TensorboardVisBackend')]
    # MMEngine keeps one visualizer per name per process: a fresh name, so that an
    # earlier test's visualizer (without this backend) is not reused
    cfg.visualizer.name = 'tensorboard_test_visualizer'
    Runner.from_cfg(cfg).train()

    events = glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'events.out.tfevents.*'))
    assert len(events) == 1, events
    acc = EventAccumulator(events[0], size_guidance={'scalars': 0})
    acc.Reload()
    tags = set(acc.Tags()['scalars'])
    with open(glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'scalars.json'))[0]) as f:
        local = [row for row in map(json.loads, f) if 'iter' in row]  # training steps

    distill = {t for t in tags if t.startswith('distill.')}
    # FCFDDenseLoss's terms: appearance, then KL and regression on the three paths
    assert distill == {'distill.loss_fcfd'} | {
        f'distill.loss_fcfd.{term}'
        for term in ('app', 'kl_s', 'kl_st', 'kl_ts', 'reg_s', 'reg_st', 'reg_ts')}
    # everything the text log has, TensorBoard has, with the same values at each step
    assert distill == {k for k in local[0] if k.startswith('distill.')}
    assert {'loss', 'loss_cls', 'loss_bbox', 'lr'} <= tags
    for tag in distill | {'loss'}:
        scalars = acc.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2]
        for s, row in zip(scalars, local):
            assert s.value == pytest.approx(row[tag], rel=1e-5)
