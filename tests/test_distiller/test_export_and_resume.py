"""Student export through the stock mmdet tools, and resuming a distillation run."""
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys

import mmdet
import numpy as np
import torch
from mmengine.runner import Runner

from helpers import REPO, load_config, repo_path, save_random_checkpoint
from mmengine.config import Config

FITNET = 'configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py'
STUDENT = 'configs/synthetic/retinanet_r18w16_fpn_student_synth.py'
TEACHER = 'configs/synthetic/retinanet_r18_fpn_teacher_synth.py'
STOCK_TEST = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')


def data_options(data_root: str, model_prefix: str) -> list:
    root = data_root.rstrip('/') + '/'
    return [
        f'test_dataloader.dataset.data_root={root}',
        f'test_evaluator.ann_file={root}annotations/instances_val.json',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        f'{model_prefix}test_cfg.score_thr=0.0',
    ]


def run_tool(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    proc = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_exported_student_matches_distiller_through_stock_mmdet(tiny_det_data, tmp_path):
    teacher_ckpt = save_random_checkpoint(Config.fromfile(repo_path(TEACHER)).model,
                                          str(tmp_path / 'teacher.pth'))
    cfg = load_config(FITNET, tiny_det_data, str(tmp_path / 'train'), max_iters=2,
                      **{'model.teacher_ckpt': teacher_ckpt})
    Runner.from_cfg(cfg).train()
    ckpt = str(tmp_path / 'train' / 'iter_2.pth')
    exported = str(tmp_path / 'train' / 'iter_2_student.pth')
    assert osp.isfile(exported), 'StudentExportHook did not write the student checkpoint'
    assert osp.isfile(str(tmp_path / 'train' / 'iter_1_student.pth'))
    # plain tensors and metadata: loads with torch's safe unpickler, as stock tools do
    student_only = torch.load(exported, weights_only=True)
    assert not any(k.startswith(('student.', 'teacher.', 'distill_losses.'))
                   for k in student_only['state_dict'])
    assert student_only['meta']['dataset_meta']['classes'][0] == 'circle'

    # the distiller checkpoint, tested with the distillation config by mmkd's tool; the
    # teacher checkpoint is not needed at test time
    distill_out = str(tmp_path / 'distiller.pkl')
    run_tool('tools/test.py', repo_path(FITNET), ckpt, '--work-dir', str(tmp_path / 't1'),
             '--out', distill_out, '--cfg-options', 'model.teacher_ckpt=/nonexistent.pth',
             *data_options(tiny_det_data, 'model.student.'))
    # the exported student, tested with the student's own config by STOCK mmdet
    stock_out = str(tmp_path / 'stock.pkl')
    run_tool(STOCK_TEST, repo_path(STUDENT), exported, '--work-dir', str(tmp_path / 't2'),
             '--out', stock_out, '--cfg-options', *data_options(tiny_det_data, 'model.'))
    with open(distill_out, 'rb') as f:
        ours = pickle.load(f)
    with open(stock_out, 'rb') as f:
        stock = pickle.load(f)
    assert len(ours) == len(stock) == 6
    assert sum(len(r['pred_instances']['scores']) for r in ours) > 0
    for a, b in zip(ours, stock):
        torch.testing.assert_close(a['pred_instances']['bboxes'], b['pred_instances']['bboxes'])
        torch.testing.assert_close(a['pred_instances']['scores'], b['pred_instances']['scores'])


def test_export_tool_refuses_a_plain_checkpoint(tmp_path):
    plain = save_random_checkpoint(Config.fromfile(repo_path(STUDENT)).model,
                                   str(tmp_path / 'plain.pth'))
    proc = subprocess.run([sys.executable, 'tools/export_student.py', plain, '--out',
                           str(tmp_path / 'x.pth')], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode != 0
    assert 'not a distiller checkpoint' in proc.stderr
    assert not osp.exists(tmp_path / 'x.pth')


def resume_cfg(data_root: str, work_dir: str, teacher_ckpt: str):
    cfg = load_config(FITNET, data_root, work_dir, max_iters=4,
                      **{'model.teacher_ckpt': teacher_ckpt})
    fpn = cfg.model.distill_losses.fpn_l2
    fpn.connectors = dict(
        student_feat=dict(type='ConvConnector', in_channels=64, out_channels=64))
    fpn.schedule = dict(warmup_iters=10)
    cfg.custom_hooks = [dict(type='DistillScheduleHook'), dict(type='StudentExportHook')]
    cfg.randomness = dict(seed=0, deterministic=True)
    return cfg


def test_resume_restores_connectors_and_schedule(tiny_det_data, tmp_path):
    teacher_ckpt = save_random_checkpoint(Config.fromfile(repo_path(TEACHER)).model,
                                          str(tmp_path / 'teacher.pth'))
    full = Runner.from_cfg(resume_cfg(tiny_det_data, str(tmp_path / 'full'), teacher_ckpt))
    full.train()
    assert full.model.progress == (3, 0)
    full_loss = full.message_hub.get_scalar('train/distill.loss_fpn_l2').data[0]

    # interrupted after iteration 2, resumed from its checkpoint
    shutil.copytree(tmp_path / 'full', tmp_path / 'resumed',
                    ignore=shutil.ignore_patterns('iter_3*', 'iter_4*', 'last_checkpoint'))
    cfg = resume_cfg(tiny_det_data, str(tmp_path / 'resumed'), teacher_ckpt)
    cfg.resume = True
    cfg.load_from = str(tmp_path / 'resumed' / 'iter_2.pth')
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.model.progress == (3, 0)
    resumed_loss = resumed.message_hub.get_scalar('train/distill.loss_fpn_l2').data[0]
    # the last two iterations (warm-up factors 3/10 and 4/10) log the same losses
    np.testing.assert_allclose(resumed_loss[-2:], full_loss[-2:], rtol=1e-5)

    expected = torch.load(tmp_path / 'full' / 'iter_4.pth', weights_only=False)['state_dict']
    got = resumed.model.state_dict()
    connector_keys = [k for k in expected if k.startswith('distill_losses.')]
    assert connector_keys
    for key in connector_keys:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)
