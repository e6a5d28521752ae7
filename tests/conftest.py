"""Shared fixtures: a tiny generated dataset and CPU-sized configs pointed at it."""
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmkd  # noqa: F401
from mmkd.datasets import generate_detection_dataset

# what mmkd's tools do (see mmkd.utils.cli.allow_mmengine_checkpoints), for in-process runs
os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def repo_path(*parts: str) -> str:
    return osp.join(REPO, *parts)


@pytest.fixture(scope='session', autouse=True)
def one_torch_thread():
    """One OpenMP thread: on a busy 2-core machine two threads spin-wait on each other
    and every CPU test runs several times slower (measured 3-6x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='session')
def tiny_det_data(tmp_path_factory) -> str:
    """A 12-train / 6-val image generated detection dataset (COCO + VOC layouts)."""
    root = str(tmp_path_factory.mktemp('synthetic_det'))
    generate_detection_dataset(root, num_train=12, num_val=6, img_size=128, seed=0)
    return root


def point_at_data(cfg: Config, data_root: str, max_iters: int = 2) -> Config:
    """Point a CPU-sized (synthetic-data) config at ``data_root``: no workers, a short
    schedule, evaluation at the end, a checkpoint every iteration."""
    root = data_root.rstrip('/') + '/'
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.batch_size = 2
        dataset = loader.dataset
        dataset.data_root = root + ('VOCdevkit/' if dataset.type == 'VOCDataset' else '')
    for name in ('val_evaluator', 'test_evaluator'):
        if cfg[name].get('ann_file'):
            cfg[name].ann_file = root + 'annotations/instances_val.json'
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=1, max_keep_ckpts=10)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook')
    cfg.log_level = 'WARNING'
    return cfg


def load_config(rel_path: str, data_root: str, work_dir: str, max_iters: int = 2,
                **options) -> Config:
    cfg = Config.fromfile(repo_path(rel_path))
    cfg = point_at_data(cfg, data_root, max_iters)
    cfg.work_dir = work_dir
    if options:
        cfg.merge_from_dict(options)
    return cfg


def save_random_checkpoint(model_cfg, path: str, seed: int = 0) -> str:
    """Build ``model_cfg`` (mmdet scope), initialise it and save its weights."""
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict(seed=seed)), path)
    return path
