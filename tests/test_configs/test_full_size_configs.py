"""Every full-size detection config shipped in configs/ (COCO / VOC, R101 -> R50, URL
weights) trains for 2 iterations on the tiny generated dataset through
:func:`mmkd.testing.tiny_run_config`, with a random-init teacher checkpoint.

New configs are picked up by the glob: any ``configs/**/*.py`` whose name ends with
``_coco.py`` or contains ``voc0712`` (``_base_`` and ``teachers`` excluded; the teacher
configs get their own build test).
"""
import glob
import math
import os.path as osp

import mmdet
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmkd.datasets import generate_detection_dataset
from mmkd.models.distillers.detection_distiller import detector_num_classes
from mmkd.testing import (RandomCheckpointCache, build_model, find_urls,
                          strip_pretrained, tiny_run_config)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG_ROOT = osp.join(REPO, 'configs')
MMDET_CONFIG_ROOT = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')


def _num_classes(model_cfg):
    """The class count of a detector config (its heads must agree)."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'num_classes':
                    found.add(value)
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(model_cfg)
    assert len(found) == 1, found
    return found.pop()


def _full_size_configs():
    paths = []
    for path in glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'), recursive=True):
        rel = osp.relpath(path, CONFIG_ROOT)
        parts = rel.split(osp.sep)
        name = parts[-1]
        if '_base_' in parts or 'teachers' in parts:
            continue
        if name.endswith('_coco.py') or 'voc0712' in name:
            paths.append(rel)
    return sorted(paths)


FULL_SIZE_CONFIGS = _full_size_configs()
TEACHER_CONFIGS = sorted(
    osp.relpath(p, CONFIG_ROOT)
    for p in glob.glob(osp.join(CONFIG_ROOT, 'teachers', '*.py')))


def test_configs_found():
    # the glob must not silently match nothing (e.g. after a directory rename)
    assert len(FULL_SIZE_CONFIGS) >= 8, FULL_SIZE_CONFIGS
    assert TEACHER_CONFIGS, 'no configs/teachers/*.py'


@pytest.fixture(scope='module', autouse=True)
def one_torch_thread():
    """On a busy 2-core machine, two OpenMP threads spin-wait on each other: the tiny
    runs take ~15 s per iteration instead of ~2 s with one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='session')
def tiny_data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tiny_det'))
    generate_detection_dataset(root, num_train=8, num_val=4, img_size=128, seed=0)
    return root


@pytest.fixture(scope='session')
def teacher_ckpts(tmp_path_factory):
    return RandomCheckpointCache(str(tmp_path_factory.mktemp('teacher_ckpts')))


def _is_distiller(cfg):
    return cfg.model.get('type') == 'DetectionDistiller'


@pytest.mark.parametrize('rel', FULL_SIZE_CONFIGS)
def test_config_file_is_full_size(rel):
    """Loaded as is, the file is a distiller with the full-size weights (the harness
    works on a copy and never edits the file)."""
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, rel))
    assert _is_distiller(cfg), cfg.model.get('type')
    model = cfg.model
    assert model.get('teacher_ckpt'), 'teacher_ckpt must be set'
    if 'voc0712' in rel:
        # VOC teachers are trained by the user (configs/teachers/...)
        assert isinstance(model.teacher, str) and model.teacher.startswith('mmkd::teachers/')
        assert model.teacher_ckpt.startswith('work_dirs/') and \
            model.teacher_ckpt.endswith('.pth'), model.teacher_ckpt
    else:
        assert model.teacher_ckpt.startswith('https://download.openmmlab.com/'), \
            model.teacher_ckpt
    # the student still starts from ImageNet weights
    assert find_urls(model.student), 'student lost its pretrained init'
    assert isinstance(model.distill_losses, dict) and model.distill_losses
    assert {h['type'] for h in cfg.custom_hooks} >= {'DistillScheduleHook'}


@pytest.mark.parametrize('rel', TEACHER_CONFIGS)
def test_teacher_config_builds(rel):
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, rel))
    assert 'torchvision://resnet101' in find_urls(cfg.model)
    assert cfg.model.backbone.depth == 101
    model_cfg = cfg.model.copy()
    strip_pretrained(model_cfg)
    assert not find_urls(model_cfg)
    model = build_model(model_cfg, 'mmdet')
    assert type(model).__name__ == cfg.model.type
    assert len(getattr(model.backbone, model.backbone.res_layers[2])) == 23  # R101 stage 3
    # the matching student (mmdet's R50 VOC config) predicts the same classes
    student = Config.fromfile(osp.join(MMDET_CONFIG_ROOT, 'pascal_voc',
                                       osp.basename(rel).replace('r101', 'r50')))
    assert detector_num_classes(model) == _num_classes(student.model) == 20


@pytest.mark.parametrize('rel', FULL_SIZE_CONFIGS)
def test_full_size_config_trains_tiny(rel, tiny_data_root, teacher_ckpts, tmp_path):
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, rel))
    cfg = tiny_run_config(cfg, tiny_data_root, str(tmp_path / 'work'), max_iters=2)
    assert not find_urls(cfg.model), 'a download is left in the tiny model config'
    ckpt = teacher_ckpts.get(cfg.model.teacher)
    cfg.model.teacher_ckpt = ckpt

    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2

    hub = runner.message_hub
    for name in cfg.model.distill_losses:
        buf = hub.get_scalar(f'train/distill.loss_{name}')
        values = buf.data[0]
        assert len(values) == 2, f'distill.loss_{name}: {values}'
        assert all(math.isfinite(float(v)) for v in values), f'distill.loss_{name}: {values}'
        print(f'{rel}: distill.loss_{name} = {[float(v) for v in values]}')
    assert math.isfinite(float(hub.get_scalar('train/loss').current()))

    # the teacher is frozen: exactly its checkpoint, parameters and buffers alike
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    assert model.teacher_loaded
    expected = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    actual = model.teacher.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key].cpu(), value), f'teacher {key} changed in training'
    assert not any(p.requires_grad for p in model.teacher.parameters())
    # ... and it is not part of what the optimizer updates
    optimized = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
                 for p in group['params']}
    assert not optimized & {id(p) for p in model.teacher.parameters()}
    # while the distill losses' own modules (connectors) are trained
    assert {id(p) for p in model.distill_losses.parameters()} <= optimized
