"""``--amp`` on CPU: bf16 autocast through CPUAutocastOptimWrapper; every CPU-sized
distillation config takes a finite training step on inputs with large activations."""
import glob
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from helpers import REPO
from mmkd.testing.tiny_config import (RandomCheckpointCache, inline_model_configs,
                                      random_class_means, strip_pretrained)
from mmkd.utils.cli import apply_common_options

CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '*', '*_synth.py'))
    if '/synthetic/' not in p)


@pytest.fixture(scope='module')
def teachers(tmp_path_factory):
    return RandomCheckpointCache(str(tmp_path_factory.mktemp('amp_teachers')))


def test_amp_on_cpu_selects_bf16_autocast():
    cfg = Config.fromfile(osp.join(REPO, CONFIGS[0]))
    apply_common_options(cfg, CONFIGS[0], amp=True)
    if torch.cuda.is_available():
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    else:
        assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16'


@pytest.mark.parametrize('config', CONFIGS)
def test_distill_losses_stay_finite_under_bf16(config, teachers, tmp_path):
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope('mmdet')
    model_cfg = inline_model_configs(cfg.model)
    strip_pretrained(model_cfg)
    model_cfg.teacher_ckpt = teachers.get(model_cfg.teacher)
    random_class_means(model_cfg, str(tmp_path))
    model = MODELS.build(model_cfg)
    model.init_weights()
    optim = build_optim_wrapper(model, dict(
        type='CPUAutocastOptimWrapper', dtype='bfloat16',
        optimizer=dict(type='SGD', lr=1e-3, momentum=0.9)))
    # large activations: images far outside the normalised range (x 40)
    data = demo_mm_inputs(2, [[3, 128, 128]] * 2, num_classes=4, num_items=[3, 2])
    for sample in data['inputs']:
        sample.mul_(0).add_((torch.rand_like(sample.float()) * 255).to(sample.dtype))
    model.data_preprocessor.std.div_(40)
    captured = {}
    original = model.parse_losses

    def keep(losses):
        captured.update(losses)
        return original(losses)

    model.parse_losses = keep
    log_vars = model.train_step(data, optim)
    distill = {k: v for k, v in captured.items() if k.startswith('distill.loss_')}
    assert distill, config
    for key, value in distill.items():
        assert torch.isfinite(value).all(), f'{config}: {key} = {value}'
        assert value.dtype == torch.float32, f'{config}: {key} is {value.dtype}'
    assert torch.isfinite(log_vars['loss'])
