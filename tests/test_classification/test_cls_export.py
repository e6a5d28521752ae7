"""Student export for classification: the checkpoint StudentExportHook writes is loaded
by STOCK mmpretrain ``tools/test.py`` with the student's own config and gives exactly the
predictions (and top-1) of the distiller checkpoint tested by mmkd's ``tools/test.py``
with the distillation config; the teacher is evaluated before training."""
import os
import os.path as osp
import pickle
import subprocess
import sys

import mmpretrain
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmkd.testing import tiny_cls_run_config

from helpers import CLS_CONFIGS, REPO

KD = osp.join(CLS_CONFIGS, 'synthetic', 'kd_resnet32-resnet8_synth.py')
STUDENT = osp.join(CLS_CONFIGS, 'synthetic', 'resnet8_synth.py')
STOCK_TEST = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'test.py')


def run_tool(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def data_options(root: str) -> list:
    return [f'test_dataloader.dataset.data_root={root}/cifar/',
            'test_dataloader.batch_size=16']


def test_exported_student_matches_the_distiller_through_stock_mmpretrain(
        tiny_cls_data, cls_teacher_ckpts, tmp_path):
    cfg = tiny_cls_run_config(Config.fromfile(KD), tiny_cls_data, str(tmp_path / 'train'),
                              max_iters=2, val=True, save_checkpoint=True)
    cfg.model.teacher_ckpt = cls_teacher_ckpts.get(cfg.model.teacher)
    runner = Runner.from_cfg(cfg)
    runner.train()
    # TeacherEvalHook ran on the val set before training
    teacher_top1 = runner.message_hub.get_info('teacher/accuracy/top1')
    assert teacher_top1 is not None and 0 <= teacher_top1 <= 100
    ckpt = str(tmp_path / 'train' / 'iter_2.pth')
    exported = str(tmp_path / 'train' / 'iter_2_student.pth')
    assert osp.isfile(exported), 'StudentExportHook did not write the student checkpoint'
    student_only = torch.load(exported, weights_only=True)
    assert not any(k.startswith(('student.', 'teacher.', 'distill_losses.'))
                   for k in student_only['state_dict'])
    assert 'backbone.layer3.0.conv1.weight' in student_only['state_dict']

    distill_out = str(tmp_path / 'distiller.pkl')
    run_tool('tools/test.py', KD, ckpt, '--work-dir', str(tmp_path / 't1'), '--out',
             distill_out, '--cfg-options', 'model.teacher_ckpt=/nonexistent.pth',
             *data_options(tiny_cls_data))
    stock_out = str(tmp_path / 'stock.pkl')
    log = run_tool(STOCK_TEST, STUDENT, exported, '--work-dir', str(tmp_path / 't2'),
                   '--out', stock_out, '--cfg-options', *data_options(tiny_cls_data))
    with open(distill_out, 'rb') as f:
        ours = pickle.load(f)
    with open(stock_out, 'rb') as f:
        stock = pickle.load(f)
    assert len(ours) == len(stock) == 100
    for a, b in zip(ours, stock):
        torch.testing.assert_close(a['pred_score'], b['pred_score'])
        assert int(a['gt_label']) == int(b['gt_label'])
    top1 = sum(int(r['pred_label']) == int(r['gt_label']) for r in stock) / len(stock) * 100
    assert f'accuracy/top1: {top1:.4f}' in log
