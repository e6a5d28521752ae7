"""The demo's report: reading MMEngine's scalars, the table's arithmetic, the plot."""
import json
import os

import pytest

from mmkd.apis.demo_report import (RunResult, format_table, markdown_table, plot_results,
                                   read_run, summary_rows)


def write_scalars(work_dir, losses, metrics):
    vis = work_dir / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    with open(vis / 'scalars.json', 'w') as f:
        for step, loss in losses:
            f.write(json.dumps(dict(loss=loss, lr=0.01, step=step)) + '\n')
        f.write(json.dumps({**{f'coco/{k}': v for k, v in metrics.items()}, 'step': 10}) + '\n')


def run(name, seed, ap, ap50=0.5, ap75=0.2):
    return RunResult(name, seed, dict(bbox_mAP=ap, bbox_mAP_50=ap50, bbox_mAP_75=ap75),
                     [(1, 2.0), (2, 1.0)])


def test_read_run_takes_the_last_evaluation_and_the_loss_curve(tmp_path):
    write_scalars(tmp_path, [(5, 1.5), (10, 1.2)],
                  dict(bbox_mAP=0.25, bbox_mAP_50=0.5, bbox_mAP_75=0.2, bbox_mAP_s=0.1))
    result = read_run('student alone', 3, str(tmp_path))
    assert result.metrics == dict(bbox_mAP=0.25, bbox_mAP_50=0.5, bbox_mAP_75=0.2)
    assert result.loss_curve == [(5, 1.5), (10, 1.2)] and result.seed == 3


def test_read_run_refuses_a_run_without_evaluation(tmp_path):
    with pytest.raises(FileNotFoundError, match='did the run finish'):
        read_run('x', 0, str(tmp_path))
    write_scalars(tmp_path, [(5, 1.5)], {})
    with pytest.raises(ValueError, match='no COCO bbox evaluation'):
        read_run('x', 0, str(tmp_path))


def test_gain_and_share_of_the_gap_closed():
    results = [run('teacher', 0, 0.40), run('student alone', 0, 0.10),
               run('student alone', 1, 0.12), run('LSH', 0, 0.20), run('LSH', 1, 0.24)]
    rows = {r['name']: r for r in summary_rows(results)}
    assert rows['student alone']['bbox_mAP'][0] == pytest.approx(0.11)
    assert rows['LSH']['gain'] == pytest.approx(0.22 - 0.11)
    assert rows['LSH']['gap_closed'] == pytest.approx(0.11 / 0.29)
    assert rows['LSH']['bbox_mAP'][1] == pytest.approx(0.0282843, rel=1e-4)  # sample std
    table = format_table(results)
    assert 'LSH' in table and '+11.0' in table and '38 %' in table
    assert markdown_table(results).count('\n') == 4  # header, rule, three rows


def test_a_loss_that_hurts_shows_a_negative_gain():
    rows = {r['name']: r for r in summary_rows(
        [run('teacher', 0, 0.4), run('student alone', 0, 0.2), run('AMD', 0, 0.15)])}
    assert rows['AMD']['gain'] < 0 and rows['AMD']['gap_closed'] < 0


def test_plot_is_written(tmp_path):
    path = str(tmp_path / 'plot.png')
    plot_results([run('teacher', 0, 0.4), run('student alone', 0, 0.2)], path)
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(path) > 5000


def test_demo_has_every_config_for_both_detectors():
    """`tools/demo.py --detector D` trains the teacher, the student and each method's CPU
    config of D; each must exist (a missing one once failed 27 minutes into a demo)."""
    import os.path as osp

    from helpers import REPO, load_tool
    demo = load_tool('demo')
    for det in ('retinanet', 'faster_rcnn'):
        for template in [demo.TEACHER_CFG, demo.STUDENT_CFG, *demo.METHOD_CFGS.values()]:
            assert osp.isfile(osp.join(REPO, template.format(det=det))), (det, template)
