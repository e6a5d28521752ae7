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


def test_tiny_run_with_val_and_checkpoint(tiny_data_root, teacher_ckpts, tmp_path):
    """The harness's optional paths: class counts set to the data's, validation (with the
    teacher evaluated first by TeacherEvalHook, COCO evaluator re-pointed), and one
    checkpoint with its student-only export."""
    rel = 'baselines/fitnet_retinanet_r101-r50_fpn_1x_coco.py'
    cfg = tiny_run_config(Config.fromfile(osp.join(CONFIG_ROOT, rel)), tiny_data_root,
                          str(tmp_path / 'work'), max_iters=1, num_classes='dataset',
                          val=True, save_checkpoint=True)
    assert cfg.model.student.bbox_head.num_classes == 4
    assert cfg.model.teacher.bbox_head.num_classes == 4
    assert cfg.val_evaluator.ann_file.startswith(tiny_data_root)
    cfg.model.teacher_ckpt = teacher_ckpts.get(cfg.model.teacher)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert osp.isfile(osp.join(cfg.work_dir, 'iter_1.pth'))
    assert osp.isfile(osp.join(cfg.work_dir, 'iter_1_student.pth'))


def test_harness_helpers():
    from mmengine.config import ConfigDict

    from mmkd.testing import detect_format, shrink_scales
    model = ConfigDict(
        backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='torchvision://x')),
        neck=dict(init_cfg=[dict(type='Xavier', layer='Conv2d'),
                            dict(type='Pretrained', checkpoint='a.pth', prefix='neck.')]),
        head=dict(pretrained='open-mmlab://y', init_cfg=dict(type='Normal', std=0.01)))
    assert strip_pretrained(model) == 3
    assert 'init_cfg' not in model.backbone
    assert model.neck.init_cfg == [dict(type='Xavier', layer='Conv2d')]
    assert model.head.pretrained is None and model.head.init_cfg.type == 'Normal'
    assert not find_urls(model)

    pipeline = [dict(type='RandomChoiceResize', scales=[(1333, 640), (1333, 800)]),
                dict(type='RandomResize', scale=[(1333, 480), (1333, 960)]),
                dict(type='TestTimeAug', transforms=[[dict(type='Resize', scale=(1333, 800))]]),
                dict(type='Pad', size=(640, 640)), dict(type='RandomFlip', prob=0.5)]
    shrink_scales(pipeline, (64, 64))
    assert pipeline[0]['scales'] == [(64, 64), (64, 64)]
    assert pipeline[1]['scale'] == [(64, 64), (64, 64)]
    assert pipeline[2]['transforms'][0][0]['scale'] == (64, 64)
    assert pipeline[3]['size'] == (64, 64) and pipeline[4]['prob'] == 0.5

    voc = dict(type='RepeatDataset', times=3, dataset=dict(
        type='ConcatDataset', datasets=[dict(type='VOCDataset', ann_file='a.txt')]))
    assert detect_format(voc) == 'voc'
    assert detect_format(dict(type='CocoDataset', ann_file='a.json')) == 'coco'
