"""Every CPU-sized teacher / student config trains and evaluates on the generated data,
in COCO format (CocoMetric) and in VOC format (VOCMetric), through the stock Runner."""
import glob
import math
import os.path as osp

import pytest
from mmengine.runner import Runner

from helpers import REPO, load_config

CONFIGS = sorted(osp.relpath(p, REPO)
                 for p in glob.glob(osp.join(REPO, 'configs', 'synthetic', '*.py')))


def test_every_detector_has_a_cpu_teacher_student_and_voc_variant():
    names = {osp.basename(c) for c in CONFIGS}
    for det in ('retinanet', 'faster_rcnn'):
        assert {f'{det}_r18_fpn_teacher_synth.py', f'{det}_r18w16_fpn_student_synth.py',
                f'{det}_r18_fpn_teacher_synth_voc.py'} <= names


@pytest.mark.parametrize('config', CONFIGS)
def test_cpu_config_trains_and_evaluates(config, tiny_det_data, tmp_path):
    # keep every box of the barely trained model, so that the metric has something to score
    keep_all = {'model.test_cfg.rcnn.score_thr' if 'faster_rcnn' in config else
                'model.test_cfg.score_thr': 0.0}
    cfg = load_config(config, tiny_det_data, str(tmp_path), max_iters=2, **keep_all)
    runner = Runner.from_cfg(cfg)
    runner.train()
    scalars = runner.message_hub.log_scalars
    key = 'val/pascal_voc/mAP' if config.endswith('_voc.py') else 'val/coco/bbox_mAP'
    assert key in scalars, sorted(scalars)
    value = scalars[key].current()
    assert 0.0 <= value <= 1.0 and not math.isnan(value)
    loss = scalars['train/loss'].current()
    assert math.isfinite(loss)
