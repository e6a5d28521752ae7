"""Two-process DDP on CPU (gloo, loopback), launched as tools/dist_train.sh launches:
distillation with connectors, LSH buffers and a frozen teacher trains without
``find_unused_parameters``, and the LSH buffers equal a freshly seeded build."""
import os
import socket
import subprocess
import sys

import torch
from mmengine.config import Config

from helpers import REPO, repo_path, save_random_checkpoint

CONFIG = 'configs/lsh/lsh_retinanet_r18_r18w16_fpn_synth.py'
TEACHER = 'configs/synthetic/retinanet_r18_fpn_teacher_synth.py'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_distillation(tiny_det_data, tmp_path):
    teacher = save_random_checkpoint(Config.fromfile(repo_path(TEACHER)).model,
                                     str(tmp_path / 'teacher.pth'))
    root = tiny_det_data.rstrip('/') + '/'
    options = [
        f'model.teacher_ckpt={teacher}', 'train_cfg.max_iters=3', 'train_cfg.val_interval=100',
        'train_dataloader.batch_size=1', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        'default_hooks.checkpoint.interval=3', 'custom_hooks=[]',
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1', MASTER_ADDR='127.0.0.1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           f'--master_port={free_port()}', 'tools/train.py', repo_path(CONFIG),
           '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'ddp'),
           '--cfg-options', *options]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'find_unused_parameters' not in proc.stderr
    state = torch.load(tmp_path / 'ddp' / 'iter_3.pth', weights_only=False)['state_dict']
    assert not any(k.startswith('teacher.') for k in state)
    # the frozen projection equals what any process draws from the same seed
    from mmkd.models.losses import DenseLSHLoss
    fresh = DenseLSHLoss(in_channels=9 * 64, num_hashes=4096)
    weight = state['distill_losses.lsh.loss.projection.weight']
    teacher_std = torch.load(teacher)['state_dict']['bbox_head.retina_cls.weight'].std()
    torch.testing.assert_close(weight, fresh.projection.weight * teacher_std)
