"""The whole job, end to end, on CPU: ``make demo``.

Generates the synthetic detection data, trains the teacher (or reuses it from an earlier
demo), trains the student alone and the student distilled with each method — same
schedule, three seeds — evaluates each with COCO mAP and prints the table: every method
next to its base (KD++ against KD, LSH against L2, ...), the gain over that base and
whether it exceeds the seed spread of both. It also writes the table as Markdown and a
plot of the mAPs and training-loss curves.

    python tools/demo.py                          # RetinaNet (~31 min on 2 CPU cores)
    python tools/demo.py --detector faster_rcnn   # Faster R-CNN (~53 min; --seeds 0: ~32)
    python tools/demo.py --quick                  # a smoke version (a few minutes)

The teacher trains first, alone, with one torch thread per core; then the student runs
go side by side, one torch thread each (``--jobs``, default 2 = the cores of a small
machine). On Linux each run is a fork of the demo, which imports torch, mmdet and mmkd
once (``mmkd.apis.forked_runs``), and the distilled runs share the teacher's outputs
through ``<out>/teacher_cache`` (the teacher runs on each augmented image once for all of
them). A progress bar per running run shows its iteration and MMEngine's ETA. Finished
runs are reused when the demo is run again with the same settings (each work dir holds a
``demo_done.json`` stamp), so an interrupted demo picks up where it stopped.
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)

from mmkd.apis.demo_report import (RunResult, format_table, markdown_report,  # noqa: E402
                                   plot_results, read_run)
from mmkd.apis.forked_runs import can_fork, preload, start_run  # noqa: E402

DETECTOR = 'retinanet'
TEACHER_CFG = 'configs/synthetic/{det}_r18_fpn_teacher_synth.py'
STUDENT_CFG = 'configs/synthetic/{det}_r18w16_fpn_student_synth.py'
STUDENT = 'student alone'
#: the frozen teacher's outputs are kept per augmented image (600 images x 2 flips, at
#: most ~0.75 MiB each: RetinaNet's KD++ and FCFD) and reused instead of running the
#: teacher again (TeacherOutputCache), in memory and in ``<out>/teacher_cache``, which
#: every distilled run shares: the teacher runs on each image once for all the seeds and
#: methods that record the same outputs. The directory is removed when the demo ends.
TEACHER_CACHE_MIB = 1024
TEACHER_CACHE_DIR = 'teacher_cache'


@dataclass(frozen=True)
class Method:
    """A row of the table: ``key`` (command line, work dir), ``name`` (the table),
    its CPU config template and the row it is compared with (``base``)."""
    key: str
    name: str
    config: str
    base: str


METHODS = [
    Method('kd', 'KD', 'configs/baselines/kd_{det}_r18_r18w16_fpn_synth.py', STUDENT),
    Method('kd++', 'KD++ (KD + ND)', 'configs/nd/nd_{det}_r18_r18w16_fpn_synth.py', 'KD'),
    Method('l2', 'L2 (FitNet)', 'configs/baselines/fitnet_{det}_r18_r18w16_fpn_synth.py',
           STUDENT),
    Method('l2+nd', 'L2 + ND (mmkd)', 'configs/nd/nd+l2_{det}_r18_r18w16_fpn_synth.py',
           'L2 (FitNet)'),
    Method('l2+amd', 'L2 + AMD', 'configs/amd/amd+l2_{det}_r18_r18w16_fpn_synth.py',
           'L2 (FitNet)'),
    Method('amd', 'AMD', 'configs/amd/amd_{det}_r18_r18w16_fpn_synth.py', STUDENT),
    Method('lsh', 'LSH', 'configs/lsh/lsh_{det}_r18_r18w16_fpn_synth.py', 'L2 (FitNet)'),
    Method('fcfd', 'FCFD', 'configs/fcfd/fcfd_{det}_r18_r18w16_fpn_synth.py', 'L2 (FitNet)'),
    Method('pkd', 'PKD', 'configs/baselines/pkd_{det}_r18_r18w16_fpn_synth.py', STUDENT),
]
BY_KEY = {m.key: m for m in METHODS}
BY_NAME = {m.name: m for m in METHODS}
METHOD_CFGS = {m.name: m.config for m in METHODS}
BASES = {m.name: m.base for m in METHODS}
NOTES = {  # method key -> what the table's reader must know about that row
    'l2+nd': '"(mmkd)": a combination of mmkd\'s own, not in the method\'s paper (the ND paper '
             'adds ND to KD and to ReviewKD, not to FitNet).',
    'l2+amd': 'L2 + AMD: its L2 term covers the FPN levels AMD uses: on RetinaNet P2-P5, '
              'the same as the L2 (FitNet) row; on Faster R-CNN P2-P5, where the L2 '
              '(FitNet) row has all five levels (P2-P6).',
}

# Per detector: the teacher's iterations (configs/synthetic/*_teacher_synth.py) and the
# students' (every student row: alone and distilled).
# Measured on 2 cores (2026-12-08, docs/results.md), from empty: RetinaNet (P2-P5) 31 min:
# the teacher 9.2 min on both cores, then 10 rows x 3 seeds of 400 iterations (batch 4,
# AdamW: the student config), two side by side, 21.3 min (a run 58-148 s); Faster R-CNN
# ~53 min: the teacher 21.2, the student runs 31.6 (a run 96-194 s).
FULL = dict(retinanet=dict(teacher_iters=1600, student_iters=400),
            faster_rcnn=dict(teacher_iters=2400, student_iters=400),
            seeds=(0, 1, 2), num_train=600, num_val=150)
QUICK = dict(retinanet=dict(teacher_iters=60, student_iters=20),
             faster_rcnn=dict(teacher_iters=60, student_iters=20),
             seeds=(0, ), num_train=48, num_val=16)


def with_bases(keys: Sequence[str]) -> List[Method]:
    """The methods of ``keys`` plus every base they are compared with, in table order."""
    wanted = set(keys)
    changed = True
    while changed:
        changed = False
        for key in list(wanted):
            base = BY_NAME.get(BY_KEY[key].base)
            if base is not None and base.key not in wanted:
                wanted.add(base.key)
                changed = True
    return [m for m in METHODS if m.key in wanted]


def schedule_options(iters: int) -> List[str]:
    """cfg-options giving a config the demo's schedule of ``iters`` iterations (warm-up,
    LR drops at 75 % and 90 %, one evaluation and one checkpoint at the end)."""
    warmup = min(100, max(iters // 6, 1))
    return [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'param_scheduler.0.end={warmup}', f'param_scheduler.1.end={iters}',
        f'param_scheduler.1.milestones=[{int(iters * 0.75)},{int(iters * 0.9)}]',
        f'default_hooks.checkpoint.interval={iters}',
        f'default_hooks.logger.interval={max(1, min(20, iters // 10))}',
    ]


def data_options(data_root: str) -> List[str]:
    root = data_root.rstrip('/') + '/'
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        f'test_evaluator.ann_file={root}annotations/instances_val.json',
    ]


# ---------------------------------------------------------------------------------------
# progress: MMEngine's log lines, e.g.
#   Iter(train) [ 240/600]  base_lr: 1.0e-02 lr: 1.0e-02  eta: 0:00:41  time: 0.12 ...
#   Iter(val) [10/19]    eta: 0:00:03  time: 0.2 ...
_TRAIN = re.compile(r'Iter\(train\)\s*\[\s*(\d+)/(\d+)\].*?eta:\s*([\d:]+(?: day[s]?, [\d:]+)?)')
_VAL = re.compile(r'Iter\(val\)\s*\[\s*(\d+)/(\d+)\]')


@dataclass
class Progress:
    """What a run's log says so far: the last logged training iteration of ``total``,
    MMEngine's ETA for the rest of training, and the phase."""
    iteration: int = 0
    total: int = 0
    eta: str = ''
    phase: str = 'starting'


def parse_progress(log_text: str, total: int) -> Progress:
    """The progress of a run from the text of its log (MMEngine's logger output)."""
    progress = Progress(total=total)
    for line in log_text.splitlines():
        match = _TRAIN.search(line)
        if match:
            progress.iteration, progress.total = int(match.group(1)), int(match.group(2))
            progress.eta, progress.phase = match.group(3), 'train'
            continue
        if _VAL.search(line) or 'Evaluating bbox' in line:
            progress.phase = 'eval'
    if progress.phase == 'eval' and progress.iteration == 0:
        progress.phase = 'teacher eval'
    elif progress.phase == 'train' and progress.iteration >= progress.total > 0:
        progress.phase = 'eval'  # the last iteration is logged: the evaluation runs
    return progress


def progress_bar(label: str, progress: Progress, elapsed: float, width: int = 24) -> str:
    """One line: ``label [#######.......]  240/600  eta 0:00:41  (1m05s)``."""
    total = max(progress.total, 1)
    done = min(progress.iteration, total)
    filled = int(width * done / total)
    bar = '#' * filled + '.' * (width - filled)
    if progress.phase == 'train' and progress.eta:
        tail = f'eta {progress.eta}'
    else:
        tail = progress.phase
    return (f'{label:<28s} [{bar}] {done:>5d}/{total:<5d} {tail:<14s} '
            f'({int(elapsed // 60)}m{int(elapsed % 60):02d}s)')


class StatusBoard:
    """Messages scroll; the progress bars of the running runs stay below them, redrawn in
    place on a terminal. Without a terminal (a pipe, CI) each run prints a progress line
    at most every ``interval`` seconds instead."""

    def __init__(self, start: float, stream=sys.stdout, interval: float = 60.0) -> None:
        self.start, self.stream, self.interval = start, stream, interval
        self.tty = hasattr(stream, 'isatty') and stream.isatty()
        self.drawn = 0
        self.last_print: Dict[str, float] = {}

    def _clear(self) -> None:
        if self.tty and self.drawn:
            self.stream.write('\x1b[F\x1b[2K' * self.drawn)
            self.drawn = 0

    def say(self, msg: str) -> None:
        self._clear()
        self.stream.write(f'[demo {time.time() - self.start:6.0f}s] {msg}\n')
        self.stream.flush()

    def draw(self, lines: Dict[str, str]) -> None:
        if self.tty:
            self._clear()
            for line in lines.values():
                self.stream.write(line + '\n')
            self.drawn = len(lines)
            self.stream.flush()
            return
        now = time.time()
        for key, line in lines.items():
            if now - self.last_print.get(key, 0.0) >= self.interval:
                self.last_print[key] = now
                self.stream.write(f'[demo {now - self.start:6.0f}s] {line}\n')
        self.stream.flush()

    def forget(self, key: str) -> None:
        self.last_print.pop(key, None)


# ---------------------------------------------------------------------------------------
@dataclass
class Job:
    """A command of the demo: it starts when the jobs named in ``after`` are done, writes
    ``log_file``, and ``done_stamp`` (if given) marks it finished and reusable."""
    key: str
    label: str
    cmd: List[str]
    log_file: str
    total_iters: int = 0
    after: List[str] = field(default_factory=list)
    stamp: Optional[dict] = None
    stamp_file: Optional[str] = None
    on_done: Optional[Callable[[], None]] = None
    #: torch threads; a job with more than one runs alone (the teacher, on every core:
    #: all but the cheap student-alone runs wait for it anyway)
    threads: int = 1

    def finished_before(self) -> bool:
        return (self.stamp_file is not None and osp.isfile(self.stamp_file)
                and _load_json(self.stamp_file) == self.stamp)


def _load_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read(path: str) -> str:
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def run_jobs(jobs: List[Job], parallel: int, board: StatusBoard,
             poll: float = 1.0, fork: bool = False) -> None:
    """Run ``jobs`` (in list order, as their dependencies allow), ``parallel`` at a time,
    each with ``job.threads`` torch threads (a multi-threaded job runs alone); reuse the
    finished ones; stop on the first failure with its log's tail. With ``fork``, a job
    that runs a Python script starts as a fork of this process (:class:`ForkedRun`: the
    imports are done once, not once per run)."""
    done = set()
    pending = []
    for job in jobs:
        if job.finished_before():
            board.say(f'{job.label}: reusing the finished run ({osp.dirname(job.log_file)})')
            done.add(job.key)
            if job.on_done:
                job.on_done()
        else:
            pending.append(job)
    running: Dict[str, tuple] = {}
    while pending or running:
        for job in list(pending):
            if len(running) >= parallel or any(
                    r[0].threads > 1 for r in running.values()):
                break
            if job.threads > 1 and running:
                break  # waits for the running ones, then runs alone
            if all(dep in done for dep in job.after):
                pending.remove(job)
                os.makedirs(osp.dirname(job.log_file), exist_ok=True)
                log = open(job.log_file, 'w')
                threads = str(job.threads)
                env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
                proc = start_run(job.cmd, REPO, log, env, job.threads, fork)
                running[job.key] = (job, proc, log, time.time())
                board.say(f'{job.label}: started (log: {job.log_file})')
        if not running and pending:
            missing = sorted({d for j in pending for d in j.after} - done)
            raise SystemExit(f'demo: jobs wait for {missing}, which no job provides')
        lines = {}
        for key, (job, proc, log, t0) in list(running.items()):
            code = proc.poll()
            if code is None:
                progress = parse_progress(_read(job.log_file), job.total_iters)
                lines[key] = progress_bar(job.label, progress, time.time() - t0)
                continue
            log.close()
            del running[key]
            board.forget(key)
            if code != 0:
                for _, other, other_log, _ in running.values():
                    other.terminate()
                    other.wait()
                    other_log.close()
                tail = _read(job.log_file)[-4000:]
                board.say(f'{job.label}: FAILED')
                raise SystemExit(f'demo: command failed ({" ".join(job.cmd)}); '
                                 f'log {job.log_file}:\n{tail}')
            if job.stamp_file:
                with open(job.stamp_file, 'w') as f:
                    json.dump(job.stamp, f)
            done.add(key)
            if job.on_done:
                job.on_done()
            board.say(f'{job.label}: done in {time.time() - t0:.0f}s')
        board.draw(lines)
        if running:
            time.sleep(poll)
    board.draw({})


# ---------------------------------------------------------------------------------------
def config_digest(config: str) -> str:
    """A digest of the *resolved* config (its bases included), for the run stamps: a run is
    reused only if its config still reads the same, not merely has the same path."""
    import hashlib
    from mmengine.config import Config
    resolved = Config.fromfile(osp.join(REPO, config)).to_dict()
    text = json.dumps(resolved, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def training_recipe(config: str) -> str:
    """``'batch 4, AdamW lr 0.002'``: what the report says about the students' training."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, config))
    optimizer = cfg.optim_wrapper.optimizer
    return (f'batch {cfg.train_dataloader.batch_size}, {optimizer.type} '
            f'lr {optimizer.lr:g}')


def class_means_options(config: str, means_file: str) -> List[str]:
    """Point every loss of ``config`` that reads class means (ND) at ``means_file``."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, config))
    return [f'model.distill_losses.{name}.loss.class_means={means_file}'
            for name, binding in cfg.model.distill_losses.items()
            if 'class_means' in binding['loss']]


def train_cmd(config: str, work_dir: str, iters: int, seed: int, data_root: str,
              extra: Optional[List[str]] = None) -> List[str]:
    return [sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
            '--cfg-options', f'randomness.seed={seed}', *schedule_options(iters),
            *data_options(data_root), *(extra or [])]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description='mmkd end-to-end demo on CPU')
    parser.add_argument('--quick', action='store_true', help='a smaller smoke version')
    parser.add_argument('--out', default='demo_output', help='where runs and reports go')
    parser.add_argument('--detector', default=DETECTOR, choices=['retinanet', 'faster_rcnn'])
    parser.add_argument('--methods', nargs='+', default=[m.key for m in METHODS],
                        choices=[m.key for m in METHODS],
                        help='rows to train (their bases are added)')
    parser.add_argument('--seeds', type=int, nargs='+', help='override the seeds')
    parser.add_argument('--teacher-iters', type=int, help="override the teacher's iterations")
    parser.add_argument('--student-iters', type=int,
                        help="override every student run's iterations")
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs side by side, one torch thread each (default 2)')
    args = parser.parse_args(argv)
    det = args.detector
    preset = QUICK if args.quick else FULL
    size = dict(preset[det], seeds=tuple(args.seeds or preset['seeds']),
                num_train=preset['num_train'], num_val=preset['num_val'],
                student_recipe=training_recipe(STUDENT_CFG.format(det=det)))
    for key in ('teacher_iters', 'student_iters'):
        if getattr(args, key):
            size[key] = getattr(args, key)
    out = osp.abspath(osp.join(args.out, 'quick' if args.quick else 'full', det))
    methods = with_bases(args.methods)
    teacher_cfg, student_cfg = TEACHER_CFG.format(det=det), STUDENT_CFG.format(det=det)
    configs = [teacher_cfg, student_cfg] + [m.config.format(det=det) for m in methods]
    missing = [c for c in configs if not osp.isfile(osp.join(REPO, c))]
    if missing:  # before half an hour of training, not after
        raise SystemExit(f'demo: no config {", ".join(missing)} for --detector {det}; '
                         f'leave the method out with --methods')
    start = time.time()
    board = StatusBoard(start)

    # 1. data (seconds)
    data_root = osp.join(REPO, 'data', 'synthetic_det' + ('_quick' if args.quick else ''))
    gen_log = osp.join(out, 'generate_data.log')
    os.makedirs(out, exist_ok=True)
    with open(gen_log, 'w') as log:
        code = subprocess.call(
            [sys.executable, 'tools/generate_data.py', '--out', data_root, '--num-train',
             str(size['num_train']), '--num-val', str(size['num_val'])],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f'demo: generating the data failed; log {gen_log}:\n'
                         f'{_read(gen_log)[-4000:]}')
    board.say(f'data: {size["num_train"]} train / {size["num_val"]} val images in '
              f'{data_root}')
    data_stamp = _load_json(osp.join(data_root, 'generate_params.json'))

    # 2. the jobs: teacher, class means (ND), every student row x seed
    jobs: List[Job] = []
    teacher_dir = osp.join(out, 'teacher')
    teacher_ckpt = osp.join(teacher_dir, f'iter_{size["teacher_iters"]}.pth')
    teacher_stamp = dict(config=teacher_cfg, digest=config_digest(teacher_cfg),
                         iters=size['teacher_iters'], data=data_stamp)
    jobs.append(Job('teacher', f'teacher ({size["teacher_iters"]} it)',
                    train_cmd(teacher_cfg, teacher_dir, size['teacher_iters'], 0,
                              data_root),
                    osp.join(teacher_dir, 'train.log'), size['teacher_iters'],
                    stamp=teacher_stamp, stamp_file=osp.join(teacher_dir, 'demo_stamp.json'),
                    threads=max(args.jobs, 1)))
    rows = [(STUDENT, 'student', student_cfg)] + [
        (m.name, m.key, m.config.format(det=det)) for m in methods]
    digests = {config: config_digest(config) for _, _, config in rows}
    means_file = osp.join(out, 'class_means.pth')
    nd_configs = {m.key: m.config.format(det=det) for m in methods
                  if class_means_options(m.config.format(det=det), means_file)}
    if nd_configs:  # ND's class means: one pass of the frozen teacher
        means_cfg = next(iter(nd_configs.values()))
        jobs.append(Job('class_means', 'ND class means',
                        [sys.executable, 'tools/class_means.py', means_cfg, '--out',
                         means_file, '--cfg-options', f'model.teacher_ckpt={teacher_ckpt}',
                         *data_options(data_root)],
                        osp.join(out, 'class_means.log'), after=['teacher'],
                        stamp=dict(teacher=teacher_stamp, config=means_cfg,
                                   digest=digests[means_cfg]),
                        stamp_file=osp.join(out, 'class_means_done.json')))
    work_dirs = []
    cache_dir = osp.join(out, TEACHER_CACHE_DIR)
    for seed in size['seeds']:
        for name, key, config in rows:
            work_dir = osp.join(out, f'{key}_seed{seed}')
            extra, after = [], []
            if name != STUDENT:
                extra, after = [f'model.teacher_ckpt={teacher_ckpt}',
                                f'model.teacher_cache.max_mib={TEACHER_CACHE_MIB}',
                                f'model.teacher_cache.dir={cache_dir}'], ['teacher']
            if key in nd_configs:
                extra += class_means_options(config, means_file)
                after.append('class_means')
            run_stamp = dict(config=config, digest=digests[config],
                             iters=size['student_iters'], seed=seed,
                             options=extra, teacher=teacher_stamp, data=data_stamp)
            jobs.append(Job(f'{key}_seed{seed}', f'{name} (seed {seed})',
                            train_cmd(config, work_dir, size['student_iters'], seed,
                                      data_root, extra),
                            osp.join(work_dir, 'train.log'), size['student_iters'],
                            after=after, stamp=run_stamp,
                            stamp_file=osp.join(work_dir, 'demo_done.json')))
            work_dirs.append((name, seed, work_dir))
    # the teacher first, alone on every core (everything but the student-alone runs waits
    # for it), then the rest in table order
    jobs.sort(key=lambda j: (j.key != 'teacher', bool(j.after)))
    board.say(f'{len(jobs)} jobs, {args.jobs} side by side; teacher '
              f'{size["teacher_iters"]} iterations, students {size["student_iters"]}, '
              f'seeds {list(size["seeds"])}')
    fork = can_fork()
    if fork:  # once here, instead of ~6 s of CPU at the start of every run
        preload()
    run_jobs(jobs, args.jobs, board, fork=fork)
    shutil.rmtree(cache_dir, ignore_errors=True)  # only the runs just finished read it

    # 3. the report
    results: List[RunResult] = [read_run('teacher', 0, teacher_dir)]
    results += [read_run(name, seed, work_dir) for name, seed, work_dir in work_dirs]
    bases = {m.name: m.base for m in methods}
    table = format_table(results, bases)
    print('\n' + table + '\n', flush=True)
    notes = [NOTES[m.key] for m in methods if m.key in NOTES]
    for note in notes:
        print(note)
    md_file = osp.join(out, 'results.md')
    png_file = osp.join(out, 'results.png')
    plot_results(results, png_file)
    with open(md_file, 'w') as f:
        f.write(markdown_report(results, detector=det, size=size,
                                minutes=(time.time() - start) / 60,
                                plot=osp.basename(png_file), bases=bases, notes=notes,
                                jobs=args.jobs))
    board.say(f'wrote {md_file} and {png_file}')


if __name__ == '__main__':
    main()
