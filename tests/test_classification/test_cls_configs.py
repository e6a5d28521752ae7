"""Every classification config (CIFAR-100, ImageNet, CPU-sized synthetic) builds and
trains 2 iterations on the tiny generated data (ImageNet configs on an ImageNet-layout
folder) through :func:`mmkd.testing.tiny_cls_run_config`, with a random-init teacher
checkpoint; and the files carry the papers' settings."""
import glob
import math
import os.path as osp

import mmpretrain
import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.runner import Runner

from mmkd.testing import find_urls, tiny_cls_run_config

from helpers import CLS_CONFIGS

CONFIGS = sorted(osp.relpath(p, CLS_CONFIGS) for group in ('cifar100', 'imagenet', 'synthetic')
                 for p in glob.glob(osp.join(CLS_CONFIGS, group, '*.py')))
METHODS = ('kd', 'lsh', 'nd', 'fcfd', 'amd')
CIFAR_PAIRS = {'resnet56-resnet20': 64, 'resnet32x4-resnet8x4': 256}


def load(rel: str) -> Config:
    return Config.fromfile(osp.join(CLS_CONFIGS, rel))


def test_the_config_set_is_complete():
    expected = {f'cifar100/{a}_cifar100.py'
                for a in ('resnet56', 'resnet20', 'resnet32x4', 'resnet8x4')}
    expected |= {f'cifar100/{m}_{p}_cifar100.py' for m in METHODS for p in CIFAR_PAIRS}
    expected |= {f'imagenet/{m}_resnet34-resnet18_in1k.py' for m in METHODS}
    expected |= {'synthetic/resnet32_synth.py', 'synthetic/resnet8_synth.py'}
    expected |= {f'synthetic/{m}_resnet32-resnet8_synth.py' for m in METHODS}
    assert expected <= set(CONFIGS), sorted(expected - set(CONFIGS))


@pytest.mark.parametrize('rel', [c for c in CONFIGS if c.startswith('cifar100/')])
def test_cifar_recipe(rel):
    cfg = load(rel)
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.05, momentum=0.9,
                                               weight_decay=5e-4)
    assert cfg.train_cfg.max_epochs == 240
    assert cfg.param_scheduler.milestones == [150, 180, 210]
    assert cfg.train_dataloader.batch_size == 64
    loader = cfg.train_dataloader.dataset
    assert loader.type == 'CIFAR100'
    assert [t['type'] for t in loader.pipeline] == ['RandomCrop', 'RandomFlip', 'PackInputs']
    assert loader.pipeline[0]['padding'] == 4
    assert cfg.randomness.seed == 0


def _losses(cfg):
    return {name: b for name, b in cfg.model.distill_losses.items()}


@pytest.mark.parametrize('pair,dim', sorted(CIFAR_PAIRS.items()))
def test_cifar_loss_settings(pair, dim):
    kd = load(f'cifar100/kd_{pair}_cifar100.py')
    assert _losses(kd)['kd'].loss == dict(type='KDLoss', temperature=4.0, loss_weight=0.9)
    assert kd.model.student.head.loss.loss_weight == 0.1
    lsh = load(f'cifar100/lsh_{pair}_cifar100.py')
    loss = _losses(lsh)['lsh'].loss
    assert (loss.num_hashes, loss.in_channels, loss.loss_weight) == (32 * dim, dim, 6.0)
    assert loss.correct_only and loss.with_l2 and loss.sigma == 'head.fc.weight'
    assert 'kd' not in _losses(lsh)
    bias_hooks = [h for h in lsh.custom_hooks if h.type == 'LSHBiasInitHook']
    assert bias_hooks and bias_hooks[0].mode == 'median'
    nd = _losses(load(f'cifar100/nd_{pair}_cifar100.py'))
    assert nd['nd'].loss.loss_weight == 2.0
    assert nd['kd'].loss.loss_weight == {64: 1.0, 256: 3.5}[dim]
    assert nd['kd'].loss.temperature == 4.0 and nd['kd'].schedule == dict(warmup_epochs=20)
    fcfd = _losses(load(f'cifar100/fcfd_{pair}_cifar100.py'))['fcfd'].loss
    assert fcfd.l2_weight == {64: 0.02, 256: 5.0}[dim]
    assert (fcfd.temperature, fcfd.num_mixed_paths, fcfd.l2_warmup_epochs) == (4.0, 2, 20)
    amd = _losses(load(f'cifar100/amd_{pair}_cifar100.py'))['amd']
    assert amd.levels == (0, 1, 2) and amd.inputs.student_feat == 'student.stages'


def test_imagenet_settings():
    meta = yaml.safe_load(open(osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs',
                                        'resnet', 'metafile.yml')))
    r34 = [m for m in meta['Models'] if m['Name'] == 'resnet34_8xb32_in1k'][0]['Weights']
    for method in METHODS:
        cfg = load(f'imagenet/{method}_resnet34-resnet18_in1k.py')
        assert cfg.model.teacher_ckpt == r34
        assert cfg.model.teacher == 'mmpretrain::resnet/resnet34_8xb32_in1k.py'
        assert cfg.train_cfg.max_epochs == 100
        assert cfg.train_dataloader.dataset.type == 'ImageNet'
    kd = _losses(load('imagenet/kd_resnet34-resnet18_in1k.py'))['kd'].loss
    assert (kd.temperature, kd.loss_weight) == (1.0, 0.5)
    lsh = _losses(load('imagenet/lsh_resnet34-resnet18_in1k.py'))['lsh'].loss
    assert (lsh.num_hashes, lsh.loss_weight, lsh.bias, lsh.correct_only) == \
        (2048, 5.0, 0.0, True)
    nd = _losses(load('imagenet/nd_resnet34-resnet18_in1k.py'))
    assert (nd['kd'].loss.loss_weight, nd['nd'].loss.loss_weight) == (2.5, 1.0)
    assert nd['kd'].loss.temperature == 1.0 and nd['kd'].schedule.warmup_epochs == 5
    fcfd = _losses(load('imagenet/fcfd_resnet34-resnet18_in1k.py'))['fcfd'].loss
    assert (fcfd.temperature, fcfd.l2_weight) == (1.0, 0.02)
    assert fcfd.l2_warmup_epochs == 5  # the authors' IN/main.py (20 on CIFAR)


@pytest.mark.parametrize('rel', CONFIGS)
def test_config_trains_tiny(rel, tiny_cls_data, cls_teacher_ckpts, tmp_path):
    cfg = load(rel)
    distiller = cfg.model.type == 'ClassificationDistiller'
    if distiller:
        assert {h.type for h in cfg.custom_hooks} >= {
            'DistillScheduleHook', 'TeacherEvalHook', 'StudentExportHook'}
    img_size = 64 if rel.startswith('imagenet/') else 32
    cfg = tiny_cls_run_config(cfg, tiny_cls_data, str(tmp_path / 'work'), max_iters=2,
                              img_size=img_size)
    assert not find_urls(cfg.model), 'a download is left in the tiny model config'
    if distiller:
        cfg.model.teacher_ckpt = cls_teacher_ckpts.get(cfg.model.teacher)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    hub = runner.message_hub
    assert math.isfinite(float(hub.get_scalar('train/loss').current()))
    if not distiller:
        return
    for name in cfg.model.distill_losses:
        values = hub.get_scalar(f'train/distill.loss_{name}').data[0]
        assert len(values) == 2 and all(math.isfinite(float(v)) for v in values), values
    model = runner.model
    expected = torch.load(cfg.model.teacher_ckpt, map_location='cpu',
                          weights_only=True)['state_dict']
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, expected[key]), f'teacher {key} changed in training'
    optimized = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
                 for p in group['params']}
    assert not optimized & {id(p) for p in model.teacher.parameters()}
    assert {id(p) for p in model.distill_losses.parameters()} <= optimized
