"""The demo's report: reading MMEngine's scalars, the table's arithmetic, the plot."""
import json
import os

import pytest

from mmkd.apis.demo_report import (RunResult, format_table, markdown_report, markdown_table,
                                   plot_results, read_run, summary_rows)


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


def test_report_states_each_detector_students_batch_and_optimizer():
    """The report's header reads the students' recipe off their config: the CPU students
    of both detectors train with AdamW at batch 4 (the teachers differ), and a change of
    the config shows in the report."""
    from helpers import load_tool
    demo = load_tool('demo')
    recipes = {det: demo.training_recipe(demo.STUDENT_CFG.format(det=det))
               for det in ('retinanet', 'faster_rcnn')}
    assert recipes == dict(retinanet='batch 4, AdamW lr 0.002',
                           faster_rcnn='batch 4, AdamW lr 0.002')
    assert demo.training_recipe(demo.TEACHER_CFG.format(det='faster_rcnn')) == \
        'batch 8, SGD lr 0.01'

    size = dict(num_val=150, student_iters=400, teacher_iters=1600, seeds=(0, 1),
                student_recipe=recipes['retinanet'])
    text = markdown_report([run('teacher', 0, 0.4), run('student alone', 0, 0.1),
                            run('student alone', 1, 0.12)], 'retinanet', size, 30.0, 'p.png')
    assert 'students trained 400 iterations (batch 4, AdamW lr 0.002) with seeds [0, 1]' in text


def test_gain_over_the_base_is_real_only_beyond_both_spreads():
    results = [run('teacher', 0, 0.60), run('student alone', 0, 0.10),
               run('student alone', 1, 0.12), run('student alone', 2, 0.11),
               # L2: 0.30 ± 0.01
               run('L2', 0, 0.29), run('L2', 1, 0.30), run('L2', 2, 0.31),
               # LSH: 0.34 ± 0.01 -> +0.04 over L2, beyond both spreads
               run('LSH', 0, 0.33), run('LSH', 1, 0.34), run('LSH', 2, 0.35),
               # FCFD: 0.32 ± 0.03 -> +0.02 over L2, within its own spread
               run('FCFD', 0, 0.29), run('FCFD', 1, 0.32), run('FCFD', 2, 0.35),
               # AMD alone: one seed -> not decidable
               run('AMD', 0, 0.2)]
    bases = {'L2': 'student alone', 'LSH': 'L2', 'FCFD': 'L2', 'AMD': 'student alone'}
    rows = {r['name']: r for r in summary_rows(results, bases)}
    assert rows['LSH']['base'] == 'L2'
    assert rows['LSH']['gain_base'] == pytest.approx(0.04)
    assert rows['LSH']['spread'] == pytest.approx((0.01, 0.01))
    assert rows['LSH']['real'] is True
    assert rows['FCFD']['gain_base'] == pytest.approx(0.02) and rows['FCFD']['real'] is False
    assert rows['L2']['real'] is True and rows['L2']['gain_base'] == pytest.approx(0.19)
    assert rows['AMD']['real'] is None
    # still measured against the student alone, whatever the base
    assert rows['LSH']['gain'] == pytest.approx(0.23)
    assert 'base' not in rows['student alone'] and 'base' not in rows['teacher']
    table = format_table(results, bases)
    lsh = next(line for line in table.splitlines() if line.startswith('LSH'))
    assert '+4.0 (±1.0 / ±1.0)' in lsh and 'yes' in lsh
    fcfd = next(line for line in table.splitlines() if line.startswith('FCFD'))
    assert '+2.0 (±3.0 / ±1.0)' in fcfd and ' no ' in fcfd
    amd = next(line for line in table.splitlines() if line.startswith('AMD'))
    assert '1 seed' in amd and '+9.0' in amd and '(±' not in amd  # no spread from one seed


def test_a_loss_below_its_base_is_never_a_real_gain():
    results = [run('student alone', s, 0.10 + 0.001 * s) for s in range(3)] + \
              [run('KD', s, 0.20 + 0.001 * s) for s in range(3)] + \
              [run('KD++', s, 0.15 + 0.001 * s) for s in range(3)]
    rows = {r['name']: r for r in summary_rows(results, {'KD++': 'KD', 'KD': 'student alone'})}
    assert rows['KD++']['gain_base'] == pytest.approx(-0.05) and rows['KD++']['real'] is False
    assert rows['KD']['real'] is True


def test_progress_is_parsed_from_mmengine_log_lines():
    demo = _demo()
    log = '\n'.join([
        '12/03 14:20:00 - mmengine - INFO - Checkpoints will be saved to /x.',
        '12/03 14:20:01 - mmengine - INFO - Iter(train) [ 20/600]  base_lr: 1.0000e-02 '
        'lr: 1.9e-03  eta: 0:04:51  time: 0.5012  data_time: 0.01  loss: 2.1',
        '12/03 14:20:11 - mmengine - INFO - Iter(train) [ 40/600]  base_lr: 1.0000e-02 '
        'lr: 3.9e-03  eta: 0:04:31  time: 0.4851  data_time: 0.01  loss: 1.9'])
    progress = demo.parse_progress(log, 600)
    assert (progress.iteration, progress.total, progress.eta, progress.phase) == \
        (40, 600, '0:04:31', 'train')
    line = demo.progress_bar('LSH (seed 1)', progress, 75.0, width=30)
    assert line.startswith('LSH (seed 1)') and '[##' in line and '40/600' in line
    assert 'eta 0:04:31' in line and '(1m15s)' in line
    assert line.count('#') == 2  # 40/600 of 30
    # the final evaluation, and a run that has logged nothing yet
    done = demo.parse_progress(log.replace('40/600', '600/600') +
                               '\n12/03 - mmengine - INFO - Iter(val) [10/19]  eta: 0:00:03', 600)
    assert done.phase == 'eval' and done.iteration == 600
    assert demo.parse_progress('', 600).phase == 'starting'
    # the teacher's evaluation before training
    assert demo.parse_progress('x - Iter(val) [ 5/19]  eta: 0:00:09', 600).phase == \
        'teacher eval'
    assert demo.parse_progress('Iter(train) [ 20/2400] lr: 1e-3 eta: 1 day, 2:03:04 t',
                               2400).eta == '1 day, 2:03:04'


def _demo():
    from helpers import load_tool
    return load_tool('demo')


def test_every_method_is_compared_with_a_base_that_the_demo_trains():
    demo = _demo()
    names = {m.name for m in demo.METHODS} | {demo.STUDENT}
    for method in demo.METHODS:
        assert method.base in names, method
    assert demo.BASES['KD++ (KD + ND)'] == 'KD' and demo.BASES['LSH'] == 'L2 (FitNet)'
    assert demo.BASES['L2 + AMD'] == 'L2 (FitNet)' and demo.BASES['FCFD'] == 'L2 (FitNet)'
    assert 'PKD' in demo.BASES
    # asking for a method brings its base along
    assert [m.key for m in demo.with_bases(['kd++', 'lsh'])] == ['kd', 'kd++', 'l2', 'lsh']
    assert [m.key for m in demo.with_bases(['pkd'])] == ['pkd']
    assert len(demo.FULL['seeds']) == 3


def test_jobs_run_side_by_side_after_their_dependencies(tmp_path):
    """run_jobs: two at a time, a job waits for what it needs, finished jobs are stamped
    and reused, a failing job stops the demo with its log."""
    import io
    import sys
    demo = _demo()
    order = tmp_path / 'order.txt'

    def job(key, after=(), seconds=0.0, code=0):
        script = (f'import time; open({str(order)!r}, "a").write("start {key}\\n"); '
                  f'time.sleep({seconds}); open({str(order)!r}, "a").write("end {key}\\n");'
                  f' raise SystemExit({code})')
        return demo.Job(key, key, [sys.executable, '-c', script],
                        str(tmp_path / key / 'train.log'), 10, after=list(after),
                        stamp=dict(k=key), stamp_file=str(tmp_path / f'{key}.json'))

    board = demo.StatusBoard(0.0, stream=io.StringIO())
    demo.run_jobs([job('teacher', seconds=1.0), job('alone', seconds=0.2),
                   job('kd', after=['teacher'])], 2, board, poll=0.05)
    events = order.read_text().split('\n')
    # the teacher-free run went next to the teacher; kd only after the teacher ended
    assert events.index('start alone') < events.index('end teacher')
    assert events.index('end teacher') < events.index('start kd')
    assert (tmp_path / 'kd.json').is_file()
    order.write_text('')
    demo.run_jobs([job('teacher'), job('kd', after=['teacher'])], 2, board, poll=0.05)
    assert order.read_text() == '' and 'reusing' in board.stream.getvalue()
    with pytest.raises(SystemExit, match='command failed'):
        demo.run_jobs([job('bad', code=3)], 2, board, poll=0.05)
    assert not (tmp_path / 'bad.json').is_file()


def test_a_multi_threaded_job_runs_alone_with_its_threads(tmp_path):
    """The teacher (threads=2) starts only when nothing runs, and nothing starts next to it;
    each job gets its own OMP_NUM_THREADS."""
    import io
    import sys
    demo = _demo()
    order = tmp_path / 'order.txt'

    def job(key, threads=1, seconds=0.3):
        script = (f'import os, time; open({str(order)!r}, "a").write('
                  f'"start {key} " + os.environ["OMP_NUM_THREADS"] + "\\n"); '
                  f'time.sleep({seconds}); open({str(order)!r}, "a").write("end {key}\\n")')
        return demo.Job(key, key, [sys.executable, '-c', script],
                        str(tmp_path / key / 'train.log'), 10, threads=threads)

    board = demo.StatusBoard(0.0, stream=io.StringIO())
    demo.run_jobs([job('before'), job('teacher', threads=2), job('after')], 2, board,
                  poll=0.05)
    events = [e for e in order.read_text().split('\n') if e]
    assert events == ['start before 1', 'end before', 'start teacher 2', 'end teacher',
                      'start after 1', 'end after']


def test_a_run_is_reused_only_while_its_resolved_config_reads_the_same(tmp_path):
    """The run stamps hold a digest of the resolved config: editing the config, or a base
    it inherits, changes it (a finished run is not reused with another config); the
    same text gives the same digest."""
    demo = _demo()
    base, child = tmp_path / 'base.py', tmp_path / 'child.py'
    base.write_text('levels = (0, 1, 2, 3, 4)\n')
    child.write_text("_base_ = ['./base.py']\nweight = 1.0\n")
    first = demo.config_digest(str(child))
    assert demo.config_digest(str(child)) == first
    base.write_text('levels = (0, 1, 2)\n')
    second = demo.config_digest(str(child))
    assert second != first
    child.write_text("_base_ = ['./base.py']\nweight = 2.0\n")
    assert demo.config_digest(str(child)) not in (first, second)
    # the demo's own configs resolve
    assert len(demo.config_digest(demo.TEACHER_CFG.format(det='retinanet'))) == 16


def test_status_board_redraws_the_bars_in_place_on_a_terminal():
    import io
    demo = _demo()

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    board = demo.StatusBoard(0.0, stream=term)
    board.draw({'a': 'bar a', 'b': 'bar b'})
    board.draw({'a': 'bar a2', 'b': 'bar b2'})  # moves up over the two bars first
    board.say('teacher: done')
    text = term.getvalue()
    assert text.startswith('bar a\nbar b\n' + '\x1b[F\x1b[2K' * 2 + 'bar a2\nbar b2\n')
    rest = text.split('bar b2\n', 1)[1]  # the message clears the bars, then scrolls
    assert rest.startswith('\x1b[F\x1b[2K' * 2) and rest.endswith('teacher: done\n')
    # a pipe gets plain lines, at most one per run and interval
    pipe = io.StringIO()
    board = demo.StatusBoard(0.0, stream=pipe, interval=3600)
    board.draw({'a': 'bar a'})
    board.draw({'a': 'bar a again'})
    assert pipe.getvalue().count('bar a') == 1 and '\x1b' not in pipe.getvalue()
