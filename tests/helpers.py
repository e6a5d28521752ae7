"""Helpers shared by the test modules (import them as ``from helpers import ...``; a
conftest is not importable by name once there are several)."""
import os
import os.path as osp
import subprocess
import sys
from typing import Callable, List

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmkd  # noqa: F401

# what mmkd's tools do (see mmkd.utils.cli.allow_mmengine_checkpoints), for in-process runs
os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
CLS_CONFIGS = osp.join(REPO, 'configs', 'classification')


def repo_path(*parts: str) -> str:
    return osp.join(REPO, *parts)


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (the tools are scripts, not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, repo_path('tools', f'{name}.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


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


#: the CPU teacher configs of the two detectors
CPU_TEACHERS = dict(frcnn='configs/synthetic/faster_rcnn_r18_fpn_teacher_synth.py',
                    retina='configs/synthetic/retinanet_r18_fpn_teacher_synth.py')


def save_random_teachers(root, seed: int = 0) -> dict:
    """Random-weight checkpoints of both CPU teachers, ``root/{frcnn,retina}.pth``;
    returns ``dict(frcnn=path, retina=path)``."""
    return {det: save_random_checkpoint(Config.fromfile(repo_path(path)).model,
                                        osp.join(str(root), f'{det}.pth'), seed=seed)
            for det, path in CPU_TEACHERS.items()}


def detection_batch(model, seed: int = 0) -> dict:
    """A preprocessed training batch of two images (128x128 and 96x128, so the second is
    padded) with 3 and 2 random boxes of 4 classes."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(seed)
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 96, 128]], num_classes=4,
                            num_items=[3, 2])
    return model.data_preprocessor(packed, True)


#: the CPU RetinaNet config of each method; ``every_loss_config`` merges their losses
METHOD_CONFIGS = {
    'fitnet': 'configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py',
    'lsh': 'configs/lsh/lsh_retinanet_r18_r18w16_fpn_synth.py',
    'nd': 'configs/nd/nd_retinanet_r18_r18w16_fpn_synth.py',  # DenseND + dense KD
    'fcfd': 'configs/fcfd/fcfd_retinanet_r18_r18w16_fpn_synth.py',
    'amd': 'configs/amd/amd+l2_retinanet_r18_r18w16_fpn_synth.py',  # AMD + FPN L2
}


def every_loss_config(tmp_path, data_root: str, max_iters: int) -> Config:
    """A RetinaNet config distilling with every method's losses at once (named
    ``<method>_<loss>``), a random teacher checkpoint ``tmp_path/teacher.pth``, a random
    class-means file ``tmp_path/class_means.pth``, pointed at ``data_root`` by
    ``point_at_data`` (batch 2, constant learning rate, a checkpoint and a log line every
    iteration), unshuffled and without random flip, no evaluation."""
    from mmkd.utils import save_class_means
    teacher = save_random_checkpoint(Config.fromfile(repo_path(CPU_TEACHERS['retina'])).model,
                                     str(tmp_path / 'teacher.pth'))
    means = str(tmp_path / 'class_means.pth')
    save_class_means(means, torch.randn(4, 64, generator=torch.Generator().manual_seed(0)),
                     torch.ones(4, dtype=torch.long), dict(num_classes=4))
    cfg = Config.fromfile(repo_path(METHOD_CONFIGS['lsh']))
    losses = {}
    for method, path in METHOD_CONFIGS.items():
        for name, binding in Config.fromfile(repo_path(path)).model.distill_losses.items():
            losses[f'{method}_{name}'] = binding
    losses['nd_nd'].loss.class_means = means
    cfg.model.distill_losses = losses
    cfg.model.teacher_ckpt = teacher
    cfg = point_at_data(cfg, data_root, max_iters)
    cfg.train_cfg.val_interval = 100  # no evaluation
    cfg.train_dataloader.sampler.shuffle = False
    cfg.train_dataloader.dataset.pipeline = [
        t for t in cfg.train_dataloader.dataset.pipeline if t.type != 'RandomFlip']
    cfg.custom_hooks = [dict(type='DistillScheduleHook')]
    return cfg


def run_gloo_ranks(tmp_path, worker_source: str, extra_args: Callable[[int], list] = lambda r: [],
                   world: int = 2) -> List[str]:
    """Run ``worker_source`` as ``world`` processes with argv ``rank world init_file
    *extra_args(rank)`` (``init_file`` for a ``file://`` gloo init); asserts that each
    exited 0 (showing its stderr otherwise) and returns their stdouts, by rank."""
    script = tmp_path / 'worker.py'
    script.write_text(worker_source)
    init = str(tmp_path / 'init')
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(world), init,
                               *map(str, extra_args(r))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    return [out for out, _ in results]
