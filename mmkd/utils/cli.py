"""Config adjustments shared by mmkd's command-line tools."""
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config


def apply_common_options(cfg: Config, config_path: str, work_dir: Optional[str] = None,
                         amp: bool = False) -> Config:
    """Work dir (default ``work_dirs/<config name>``), mixed precision (fp16 with loss
    scaling on GPU, bf16 autocast on CPU), and the distributed backend: ``nccl`` needs
    GPUs, so CPU-only machines use ``gloo``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    if amp and torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif amp:  # MMEngine's AmpOptimWrapper needs a GPU: bf16 autocast on CPU
        cfg.optim_wrapper.type = 'CPUAutocastOptimWrapper'
        cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
    if not torch.cuda.is_available() and cfg.get('env_cfg', {}).get('dist_cfg'):
        cfg.env_cfg.dist_cfg.backend = 'gloo'
    return cfg


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load`` read MMEngine training checkpoints (for ``--resume`` and
    ``load_from``).

    MMEngine 0.10 loads checkpoints with ``torch.load``'s default, which torch >= 2.6
    turned to ``weights_only=True``; a training checkpoint also holds the message hub
    (numpy arrays, ``HistoryBuffer``), which that mode refuses. mmkd's tools therefore
    set ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (unless the user set it): load only
    checkpoints you trust, as with any pickle. Exported student checkpoints hold plain
    tensors and metadata and load with ``weights_only=True``.
    """
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')


def init_cpu_distributed(cfg: Config) -> None:
    """Multi-process training without GPUs (gloo): MMEngine 0.10's ``pytorch`` launcher
    calls ``torch.cuda.set_device`` and wraps the model with ``device_ids``, both of which
    fail on CPU. Start the gloo process group here (MMEngine then skips its own) and wrap
    without ``device_ids``. Does nothing with CUDA or without a launcher."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))


def close_distributed() -> None:
    """End a multi-process run cleanly: wait for every rank, then destroy the process
    group. Without it a rank that finishes first can exit while gloo's threads still
    talk to the others, which aborts them (``terminate called without an active
    exception``) after the work is done; PyTorch also warns about an undestroyed group.
    Does nothing in a single-process run."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
