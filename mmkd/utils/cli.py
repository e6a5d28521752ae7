"""Config adjustments shared by mmkd's command-line tools."""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config


def apply_common_options(cfg: Config, config_path: str, work_dir: Optional[str] = None,
                         amp: bool = False) -> Config:
    """Work dir (default ``work_dirs/<config name>``), mixed precision, and the
    distributed backend: ``nccl`` needs GPUs, so CPU-only machines use ``gloo``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if not torch.cuda.is_available() and cfg.get('env_cfg', {}).get('dist_cfg'):
        cfg.env_cfg.dist_cfg.backend = 'gloo'
    return cfg
