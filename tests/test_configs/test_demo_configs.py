"""The CPU configs the demo's comparison rows added (KD on RetinaNet, L2 + ND, PKD): each
differs from its base by exactly the term it claims, and trains one step on the tiny
generated data with a random teacher (and random class means), every distill loss finite
and positive."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from helpers import load_config, repo_path, save_random_teachers
from mmkd.registry import MODELS
from mmkd.utils import save_class_means

NEW = {
    'configs/baselines/kd_retinanet_r18_r18w16_fpn_synth.py': 'retina',
    'configs/nd/nd+l2_retinanet_r18_r18w16_fpn_synth.py': 'retina',
    'configs/nd/nd+l2_faster_rcnn_r18_r18w16_fpn_synth.py': 'frcnn',
    'configs/baselines/pkd_retinanet_r18_r18w16_fpn_synth.py': 'retina',
    'configs/baselines/pkd_faster_rcnn_r18_r18w16_fpn_synth.py': 'frcnn',
}
DET = dict(retina='retinanet', frcnn='faster_rcnn')


def losses_of(rel):
    return Config.fromfile(repo_path(rel)).model.distill_losses


@pytest.mark.parametrize('det', ['retinanet', 'faster_rcnn'])
def test_combinations_differ_from_their_base_by_one_term(det):
    nd_l2 = losses_of(f'configs/nd/nd+l2_{det}_r18_r18w16_fpn_synth.py')
    fitnet = losses_of(f'configs/baselines/fitnet_{det}_r18_r18w16_fpn_synth.py')
    kdpp = losses_of(f'configs/nd/nd_{det}_r18_r18w16_fpn_synth.py')
    assert set(nd_l2) == {'nd', 'fpn_l2'}
    assert nd_l2.fpn_l2 == fitnet.fpn_l2  # L2 + ND = the FitNet row + ND
    assert nd_l2.nd == kdpp.nd            # the same ND term as KD++
    # KD++ = the KD row + ND
    kd = losses_of(f'configs/baselines/kd_{det}_r18_r18w16_fpn_synth.py')
    assert set(kdpp) == set(kd) | {'nd'}
    for name in kd:
        assert kdpp[name] == kd[name], name


@pytest.mark.parametrize('det,weight', [('retinanet', 10.0), ('faster_rcnn', 6.0)])
def test_pkd_configs_keep_mmrazors_levels_and_weights(det, weight):
    for rel in (f'configs/baselines/pkd_{det}_r18_r18w16_fpn_synth.py',
                f'configs/baselines/pkd_{det.replace("_", "-")}_r101-r50_fpn_1x_coco.py'):
        pkd = losses_of(rel).fpn_pkd
        assert pkd.loss == dict(type='PKDLoss', loss_weight=weight), rel
        assert tuple(pkd.levels) == (0, 1, 2, 3) and 'connectors' not in pkd, rel


@pytest.fixture(scope='module')
def teachers(tmp_path_factory):
    return save_random_teachers(tmp_path_factory.mktemp('demo_teachers'))


@pytest.mark.parametrize('rel', sorted(NEW))
def test_new_demo_config_one_training_step(rel, teachers, tiny_det_data, tmp_path):
    det = NEW[rel]
    options = {'model.teacher_ckpt': teachers[det]}
    for name, binding in losses_of(rel).items():
        if 'class_means' in binding.loss:
            rows, dim = (5, 256) if det == 'frcnn' else (4, 64)
            means = str(tmp_path / 'class_means.pth')
            save_class_means(means, torch.randn(rows, dim), torch.ones(rows, dtype=torch.long),
                             dict(num_classes=rows))
            options[f'model.distill_losses.{name}.loss.class_means'] = means
    cfg = load_config(rel, tiny_det_data, str(tmp_path), max_iters=1, **options)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    before = model.student.neck.fpn_convs[0].conv.weight.detach().clone()
    log_vars = model.train_step(data, optim_wrapper)
    for name in cfg.model.distill_losses:
        value = float(log_vars[f'distill.loss_{name}'].detach())
        assert math.isfinite(value) and value > 0, (name, value)
    after = model.student.neck.fpn_convs[0].conv.weight
    assert torch.isfinite(after).all() and not torch.equal(before, after)
