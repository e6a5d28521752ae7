"""mmdet's own entry points on mmkd's outputs: ``DetInferencer`` on an exported student,
and mmdet's stock ``tools/train.py`` on an mmkd distillation config."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import mmdet
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers import REPO, repo_path, save_random_checkpoint
from mmkd.utils import export_student

FITNET = 'configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py'
STUDENT = 'configs/synthetic/retinanet_r18w16_fpn_student_synth.py'
TEACHER = 'configs/synthetic/retinanet_r18_fpn_teacher_synth.py'
STOCK_TRAIN = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')


@pytest.fixture(scope='module')
def exported_student(tmp_path_factory):
    """A distiller checkpoint as training saves it (student + connectors, the data set's
    classes in its meta) and its ``*_student.pth`` export; returns both paths."""
    from mmdet.registry import MODELS
    root = tmp_path_factory.mktemp('inferencer')
    init_default_scope('mmdet')
    cfg = Config.fromfile(repo_path(FITNET))
    torch.manual_seed(0)
    distiller = MODELS.build(cfg.model)
    distiller.student.init_weights()  # no teacher needed: it is never saved
    meta = dict(dataset_meta=dict(classes=cfg.train_dataloader.dataset.metainfo.classes))
    ckpt = str(root / 'iter_2.pth')
    torch.save(dict(meta=meta, state_dict=distiller.state_dict()), ckpt)
    return ckpt, export_student(ckpt, str(root / 'iter_2_student.pth'))


def test_exported_student_runs_in_det_inferencer(exported_student, tiny_det_data, tmp_path):
    from mmdet.apis import DetInferencer, inference_detector
    ckpt, student_ckpt = exported_student
    image = sorted(glob.glob(osp.join(tiny_det_data, 'VOCdevkit/SYNTH/JPEGImages/*.jpg')))[0]
    # the student's own config; a randomly initialised head scores below the default
    # threshold, so keep every box
    student_cfg = Config.fromfile(repo_path(STUDENT))
    student_cfg.model.test_cfg.score_thr = 0.0
    inferencer = DetInferencer(model=student_cfg, weights=student_ckpt, device='cpu')
    out_dir = tmp_path / 'out'
    result = inferencer(image, out_dir=str(out_dir), no_save_pred=False, pred_score_thr=0.0)
    name = osp.splitext(osp.basename(image))[0]
    vis = glob.glob(str(out_dir / 'vis' / f'{name}.*'))
    assert vis and osp.getsize(vis[0]) > 0, os.listdir(out_dir)
    with open(out_dir / 'preds' / f'{name}.json') as f:
        saved = json.load(f)
    pred = result['predictions'][0]
    assert len(pred['bboxes']) > 0 and saved == pred
    assert inferencer.model.dataset_meta['classes'][0] == 'circle'  # from the export's meta

    # the same boxes as the distiller checkpoint run through its distillation config
    distill_cfg = Config.fromfile(repo_path(FITNET))
    distill_cfg.model.student.test_cfg.score_thr = 0.0
    from mmdet.registry import MODELS
    from mmengine.runner import load_checkpoint
    init_default_scope('mmdet')
    distiller = MODELS.build(distill_cfg.model)
    load_checkpoint(distiller, ckpt, map_location='cpu', strict=True)
    distiller.cfg = distill_cfg  # what mmdet's init_detector sets
    ref = inference_detector(distiller.eval(), image).pred_instances
    torch.testing.assert_close(torch.tensor(pred['bboxes']), ref.bboxes)
    torch.testing.assert_close(torch.tensor(pred['scores']), ref.scores)
    assert pred['labels'] == ref.labels.tolist()


def test_stock_mmdet_train_trains_an_mmkd_config(tiny_det_data, tmp_path):
    """mmdet's own tools/train.py (site-packages/mmdet/.mim/tools) on a user's config that
    inherits an mmkd distillation config: two iterations, the student exported."""
    teacher = save_random_checkpoint(Config.fromfile(repo_path(TEACHER)).model,
                                     str(tmp_path / 'teacher.pth'))
    root = tiny_det_data.rstrip('/') + '/'
    (tmp_path / 'my_fitnet.py').write_text(f"""
_base_ = [{repo_path(FITNET)!r}]
model = dict(teacher_ckpt={teacher!r})
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={root!r}))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={root!r}))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={root + 'annotations/instances_val.json'!r})
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
custom_hooks = [dict(type='StudentExportHook')]
""")
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    env['OMP_NUM_THREADS'] = '1'
    work = tmp_path / 'work'
    proc = subprocess.run([sys.executable, STOCK_TRAIN, str(tmp_path / 'my_fitnet.py'),
                           '--work-dir', str(work)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert osp.isfile(work / 'iter_2.pth') and osp.isfile(work / 'iter_2_student.pth')
    logs = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    assert logs, os.listdir(work)
    with open(logs[0]) as f:
        steps = [row for row in map(json.loads, f) if 'iter' in row]  # training steps
    assert [s['iter'] for s in steps] == [1, 2]
    assert all(s['distill.loss_fpn_l2'] > 0 for s in steps)
    assert REPO not in osp.realpath(str(work))
