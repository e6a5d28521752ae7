"""Two-process DDP on CPU (gloo, loopback), launched by tools/dist_train.sh, of
a distillation config with every detection loss, compared with one process holding the
same total batch; and the cross-rank check of the teacher's weights."""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Dict, List

import pytest
import torch

from helpers import REPO, every_loss_config, run_gloo_ranks

ITERS = 2
#: logged losses: float32 sums in a different order (one batch of 4 vs two of 2 + all-reduce)
RTOL, ATOL = 1e-4, 1e-6
#: parameter updates after ITERS steps: relative to each tensor's largest update, plus 8
#: float32 rounding steps of its largest value (the update is a difference of weights)
UPDATE_RTOL = 1e-3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def duplicated_pairs_data(source_root: str, root: str) -> None:
    """A train set ``[A, A, B, B]``: two generated images, each listed twice.

    Unshuffled, one process with batch 4 sees ``(A, A, B, B)``; two processes with batch
    2 see ``(A, B)`` each (MMEngine's sampler gives rank r the indices r, r + 2, ...).
    mmdet normalises per process (focal loss by the positives on that process,
    BatchNorm statistics over that process's images), so only with the same images on
    every rank is the one-process run the exact reference; with different images per
    rank a plain mmdet detector's DDP run differs from one process too. (Batch 2 per
    process, not 1: FCFD's BatchNorm bridges need more than one value per channel on
    the 1x1 last FPN level of these 128-pixel images.)"""
    with open(osp.join(source_root, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    images, annotations = [], []
    for image in coco['images'][:2]:
        for _ in range(2):
            new_id = len(images) + 1
            images.append(dict(image, id=new_id))
            for ann in coco['annotations']:
                if ann['image_id'] == image['id']:
                    annotations.append(dict(ann, id=len(annotations) + 1, image_id=new_id))
    os.makedirs(osp.join(root, 'annotations'))
    with open(osp.join(root, 'annotations', 'instances_train.json'), 'w') as f:
        json.dump(dict(coco, images=images, annotations=annotations), f)
    os.symlink(osp.join(source_root, 'annotations', 'instances_val.json'),
               osp.join(root, 'annotations', 'instances_val.json'))
    os.symlink(osp.join(source_root, 'VOCdevkit'), osp.join(root, 'VOCdevkit'))


def ddp_test_config(tmp_path, data_root: str) -> str:
    """``every_loss_config`` with each process's state dumped before and after training;
    written to a file for the launchers; returns its path."""
    cfg = every_loss_config(tmp_path, data_root, ITERS)
    cfg.custom_hooks.append(dict(type='RankStateDumpHook'))
    # SGD, whatever the CPU RetinaNet trains with (AdamW): its update is linear in the
    # gradient, so DDP's other summation order shows as float rounding in the weights.
    # Adam divides by sqrt(v): where a gradient element sums to nearly zero, a rounding
    # of that sum turns into an update of the order of the learning rate.
    cfg.optim_wrapper.optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
    cfg.custom_imports = dict(imports=['mmkd', 'rank_state_dump'],
                              allow_failed_imports=False)
    cfg.log_level = 'INFO'
    path = str(tmp_path / 'every_loss.py')
    cfg.dump(path)
    return path


def train(config: str, work_dir: str, batch_size: int, nproc: int) -> str:
    """Train through ``tools/dist_train.sh`` (``nproc`` > 1) or ``tools/train.py``."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MASTER_ADDR='127.0.0.1',
               PORT=str(free_port()),
               PATH=os.pathsep.join([osp.dirname(sys.executable), os.environ['PATH']]),
               PYTHONPATH=os.pathsep.join([osp.dirname(__file__),
                                           os.environ.get('PYTHONPATH', '')]))
    launch = (['bash', 'tools/dist_train.sh', config, str(nproc)] if nproc > 1 else
              [sys.executable, 'tools/train.py', config])
    proc = subprocess.run(
        launch + ['--work-dir', work_dir, '--cfg-options',
                  f'train_dataloader.batch_size={batch_size}'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def logged_losses(work_dir: str) -> List[Dict[str, float]]:
    """The per-iteration loss scalars MMEngine logged (rank 0's)."""
    (path,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in row.items() if k.startswith(('loss', 'distill.'))}
            for row in rows if 'loss' in row]


def test_two_processes_match_one_process_with_every_loss(tiny_det_data, tmp_path):
    """FitNet, KD, LSH, ND, FCFD, AMD (+L2) in one config. Two gloo processes with batch
    2 against one process with batch 4 over the same images: both ranks end holding
    identical student, connector, LSH projection, class-mean and teacher tensors; the
    logged losses and the trained weights equal the one-process run's to RTOL / ATOL
    (float32 summation order), with no ``find_unused_parameters``."""
    data_root = str(tmp_path / 'data')
    duplicated_pairs_data(tiny_det_data, data_root)
    config = ddp_test_config(tmp_path, data_root)
    ddp_dir, single_dir = str(tmp_path / 'ddp'), str(tmp_path / 'single')
    log = train(config, ddp_dir, batch_size=2, nproc=2)
    assert 'find_unused_parameters=True' not in log  # DDP would fail at step 2 otherwise
    train(config, single_dir, batch_size=4, nproc=1)

    def load(run_dir: str, rank: int, when: str) -> Dict[str, torch.Tensor]:
        return torch.load(osp.join(run_dir, f'rank{rank}_{when}.pth'), weights_only=True)

    ddp = {when: [load(ddp_dir, r, when) for r in range(2)] for when in ('init', 'final')}
    single = {when: load(single_dir, 0, when) for when in ('init', 'final')}
    for when, (rank0, rank1) in ddp.items():
        assert rank0.keys() == rank1.keys() == single[when].keys()
        for key in rank0:  # every tensor, teacher and BN statistics included
            assert torch.equal(rank0[key], rank1[key]), f'ranks differ in {key} ({when})'
        assert not rank0['teacher_training'] and not single[when]['teacher_training']
    for key, value in single['init'].items():  # the same start: same seed, same teacher
        assert torch.equal(ddp['init'][0][key], value), key
    assert 'distill_losses.lsh_lsh.loss.projection.weight' in single['init']
    assert 'distill_losses.nd_nd.loss.normalized_means' in single['init']

    teacher = torch.load(str(tmp_path / 'teacher.pth'), weights_only=True)['state_dict']
    for key, value in teacher.items():  # loaded and frozen on both ranks
        assert torch.equal(ddp['final'][0][f'teacher.{key}'], value), key
    checkpoint = torch.load(osp.join(ddp_dir, f'iter_{ITERS}.pth'), weights_only=False)
    assert not any(k.startswith('teacher.') for k in checkpoint['state_dict'])

    # what training changed: every update equals the one-process update to UPDATE_RTOL
    # of its largest element. BN's running variance is left out: it uses the unbiased
    # estimate n / (n - 1) over the process's own batch, and n differs by design.
    moved = 0
    for key, start in single['init'].items():
        if key.startswith('teacher') or key.endswith(('running_var', 'num_batches_tracked')):
            continue
        step_single = single['final'][key] - start
        step_ddp = ddp['final'][0][key] - start
        scale = step_single.abs().max().item()
        error = (step_ddp - step_single).abs().max().item()
        rounding = 8 * torch.finfo(torch.float32).eps * start.abs().max().item()
        assert error <= UPDATE_RTOL * scale + rounding, f'{key}: {error:.3g} vs {scale:.3g}'
        moved += scale > 0
    print(f'{moved} tensors moved')
    assert moved > 100
    ddp_losses, single_losses = logged_losses(ddp_dir), logged_losses(single_dir)
    assert len(ddp_losses) == len(single_losses) == ITERS
    names = {f'distill.loss_{m}' for m in
             ('fitnet_fpn_l2', 'lsh_lsh', 'nd_nd', 'nd_dense_kd', 'fcfd_fcfd', 'amd_fpn_amd',
              'amd_fpn_l2')}
    for ddp_row, single_row in zip(ddp_losses, single_losses):
        assert names <= ddp_row.keys() and ddp_row.keys() == single_row.keys()
        for name, value in single_row.items():
            assert ddp_row[name] == pytest.approx(value, rel=RTOL, abs=ATOL), name


RANK_CHECK_WORKER = r'''
import sys
import torch
import torch.distributed as dist
from mmkd.utils.cli import close_distributed
from mmkd.utils.rank_consistency import check_same_on_all_ranks

rank, init_file = int(sys.argv[1]), sys.argv[3]
dist.init_process_group('gloo', init_method='file://' + init_file, rank=rank, world_size=2)
same = {'backbone.conv1.weight': torch.arange(6.0).reshape(2, 3), 'bn.num_batches': torch.tensor(3)}
check_same_on_all_ranks(same, 'teacher', 'load the same file')
differs = dict(same, **{'head.fc.weight': torch.ones(4) * (1 + rank),
                        'head.fc.bias': torch.zeros(4) if rank == 0 else torch.arange(4.0)})
try:
    check_same_on_all_ranks(differs, 'teacher', 'load the same file')
except RuntimeError as err:
    print(err)
close_distributed()
assert not dist.is_initialized()
'''


def test_rank_check_names_the_first_differing_tensor(tmp_path):
    """Two gloo ranks: identical tensors pass; differing ones stop both ranks with a
    message naming the rank, the first differing tensor, the count and the fix."""
    outputs = [out.strip() for out in run_gloo_ranks(tmp_path, RANK_CHECK_WORKER)]
    expected = ("rank 1's teacher differs from rank 0's in 'head.fc.weight' (and 1 more); "
                'load the same file')
    assert outputs == [expected, expected]


def test_fingerprints_tell_permuted_and_equal_tensors_apart():
    from mmkd.utils.rank_consistency import tensor_fingerprints
    x = torch.randn(5, 7)
    same = tensor_fingerprints({'a': x, 'b': torch.tensor(2)})
    assert torch.equal(same, tensor_fingerprints({'a': x.clone(), 'b': torch.tensor(2)}))
    assert not torch.equal(same[0], tensor_fingerprints({'a': x.flip(0)})[0])
    assert not torch.equal(same[0], tensor_fingerprints({'a': x.reshape(7, 5).t()})[0])
    assert tensor_fingerprints({}).shape == (0, 3)
