"""Exact resume with every detection loss: a run interrupted after k iterations and
resumed ends with the same state — student, connectors, FCFD bridges (BatchNorm
statistics included), LSH projections, ND class means — and logs the same losses as the
uninterrupted run."""
import shutil

import numpy as np
import torch
from mmengine.runner import Runner

from helpers import every_loss_config
from mmkd.utils import save_class_means

ITERS, INTERRUPTED_AT = 4, 2


def with_options(cfg, **options):
    cfg = cfg.copy()
    cfg.merge_from_dict(options)
    return cfg


def test_resume_with_every_loss_ends_in_the_same_state(tiny_det_data, tmp_path):
    cfg = every_loss_config(tmp_path, tiny_det_data, ITERS)
    cfg.randomness = dict(seed=0, deterministic=True)
    full = Runner.from_cfg(with_options(cfg, work_dir=str(tmp_path / 'full')))
    full.train()
    names = sorted(k for k in full.message_hub.log_scalars
                   if k.startswith('train/distill.loss_') and k.count('.') == 1)
    assert len(names) == 7, names

    # interrupted after iteration 2: only its checkpoints are left
    shutil.copytree(tmp_path / 'full', tmp_path / 'resumed', ignore=shutil.ignore_patterns(
        *[f'iter_{i}*' for i in range(INTERRUPTED_AT + 1, ITERS + 1)], 'last_checkpoint'))
    # the class-means file changes on disk meanwhile: the run continues with its own table
    save_class_means(str(tmp_path / 'class_means.pth'), torch.ones(4, 64),
                     torch.ones(4, dtype=torch.long), dict(num_classes=4))
    resumed = Runner.from_cfg(with_options(
        cfg, work_dir=str(tmp_path / 'resumed'), resume=True,
        load_from=str(tmp_path / 'resumed' / f'iter_{INTERRUPTED_AT}.pth')))
    resumed.train()
    assert resumed.iter == ITERS

    resumed_iters = ITERS - INTERRUPTED_AT
    for name in names + ['train/loss']:
        full_values = full.message_hub.get_scalar(name).data[0][-resumed_iters:]
        resumed_values = resumed.message_hub.get_scalar(name).data[0][-resumed_iters:]
        np.testing.assert_allclose(resumed_values, full_values, rtol=1e-5, err_msg=name)

    expected = torch.load(tmp_path / 'full' / f'iter_{ITERS}.pth',
                          weights_only=False)['state_dict']
    got = resumed.model.state_dict()
    assert got.keys() == expected.keys()
    for prefix in ('student.', 'distill_losses.fcfd_fcfd.loss.s2t.',
                   'distill_losses.lsh_lsh.loss.projection', 'distill_losses.nd_nd.'):
        assert any(k.startswith(prefix) for k in got), prefix
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6,
                                   msg=lambda m, k=key: f'{k}: {m}')
    assert not torch.equal(got['distill_losses.nd_nd.loss.normalized_means'],
                           torch.nn.functional.normalize(torch.ones(4, 64), dim=1))
