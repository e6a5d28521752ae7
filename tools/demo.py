"""The whole job, end to end, on CPU: ``make demo``.

Generates the synthetic detection data, trains the teacher (or reuses it from an earlier
demo), trains the student alone and the student distilled with each method — same
schedule, same seeds — evaluates each with COCO mAP and prints the table. It also writes
the table as Markdown and a plot of the mAPs and training-loss curves.

    python tools/demo.py            # the full demo (< 30 min on 2 CPU cores)
    python tools/demo.py --quick    # a smoke version (a few minutes)

Finished runs are reused when the demo is run again with the same settings (each work
dir holds a ``demo_done.json`` stamp), so an interrupted demo picks up where it stopped.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)

from mmkd.apis.demo_report import (RunResult, format_table, markdown_report,  # noqa: E402
                                   plot_results, read_run)

DETECTOR = 'retinanet'
TEACHER_CFG = 'configs/synthetic/{det}_r18_fpn_teacher_synth.py'
STUDENT_CFG = 'configs/synthetic/{det}_r18w16_fpn_student_synth.py'
METHOD_CFGS = {
    'L2 (FitNet)': 'configs/baselines/fitnet_{det}_r18_r18w16_fpn_synth.py',
    'LSH': 'configs/lsh/lsh_{det}_r18_r18w16_fpn_synth.py',
    'ND': 'configs/nd/nd_{det}_r18_r18w16_fpn_synth.py',
    'FCFD': 'configs/fcfd/fcfd_{det}_r18_r18w16_fpn_synth.py',
    'AMD': 'configs/amd/amd_{det}_r18_r18w16_fpn_synth.py',
}
FULL = dict(teacher_iters=2400, student_iters=600, seeds=(0, 1), num_train=600, num_val=150)
QUICK = dict(teacher_iters=300, student_iters=100, seeds=(0, ), num_train=200, num_val=50)


def schedule_options(iters: int) -> List[str]:
    """cfg-options giving a config the demo's schedule of ``iters`` iterations (warm-up,
    LR drops at 75 % and 90 %, one evaluation and one checkpoint at the end)."""
    warmup = min(100, max(iters // 6, 1))
    return [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'param_scheduler.0.end={warmup}', f'param_scheduler.1.end={iters}',
        f'param_scheduler.1.milestones=[{int(iters * 0.75)},{int(iters * 0.9)}]',
        f'default_hooks.checkpoint.interval={iters}',
        'default_hooks.logger.interval=20',
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


def run(cmd: List[str], log_file: str) -> None:
    os.makedirs(osp.dirname(log_file), exist_ok=True)
    with open(log_file, 'w') as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_file) as log:
            tail = log.read()[-4000:]
        raise SystemExit(f'demo: command failed ({" ".join(cmd)}); log {log_file}:\n{tail}')


def train(config: str, work_dir: str, iters: int, seed: int, data_root: str,
          extra: Optional[List[str]] = None) -> None:
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
           '--cfg-options', f'randomness.seed={seed}', *schedule_options(iters),
           *data_options(data_root), *(extra or [])]
    run(cmd, osp.join(work_dir, 'train.log'))


def main() -> None:
    parser = argparse.ArgumentParser(description='mmkd end-to-end demo on CPU')
    parser.add_argument('--quick', action='store_true', help='a smaller smoke version')
    parser.add_argument('--out', default='demo_output', help='where runs and reports go')
    parser.add_argument('--detector', default=DETECTOR, choices=['retinanet', 'faster_rcnn'])
    parser.add_argument('--methods', nargs='+', default=list(METHOD_CFGS),
                        choices=list(METHOD_CFGS))
    parser.add_argument('--seeds', type=int, nargs='+', help='override the seeds')
    args = parser.parse_args()
    size = dict(QUICK if args.quick else FULL)
    if args.seeds:
        size['seeds'] = tuple(args.seeds)
    out = osp.abspath(osp.join(args.out, 'quick' if args.quick else 'full', args.detector))
    det = args.detector
    configs = [TEACHER_CFG.format(det=det), STUDENT_CFG.format(det=det)] + [
        METHOD_CFGS[m].format(det=det) for m in args.methods]
    missing = [c for c in configs if not osp.isfile(osp.join(REPO, c))]
    if missing:  # before half an hour of training, not after
        raise SystemExit(f'demo: no config {", ".join(missing)} for --detector {det}; '
                         f'leave the method out with --methods')
    start = time.time()

    def say(msg: str) -> None:
        print(f'[demo {time.time() - start:6.0f}s] {msg}', flush=True)

    # 1. data
    data_root = osp.join(REPO, 'data', 'synthetic_det' + ('_quick' if args.quick else ''))
    run([sys.executable, 'tools/generate_data.py', '--out', data_root, '--num-train',
         str(size['num_train']), '--num-val', str(size['num_val'])],
        osp.join(out, 'generate_data.log'))
    say(f'data: {size["num_train"]} train / {size["num_val"]} val images in {data_root}')

    # 2. teacher, reused when an earlier demo trained it with the same settings
    teacher_dir = osp.join(out, 'teacher')
    teacher_ckpt = osp.join(teacher_dir, f'iter_{size["teacher_iters"]}.pth')
    stamp_file = osp.join(teacher_dir, 'demo_stamp.json')
    stamp = dict(config=TEACHER_CFG.format(det=det), iters=size['teacher_iters'],
                 data=json.load(open(osp.join(data_root, 'generate_params.json'))))
    if osp.isfile(teacher_ckpt) and osp.isfile(stamp_file) and \
            json.load(open(stamp_file)) == stamp:
        say(f'teacher: reusing {teacher_ckpt}')
    else:
        say(f'teacher: training {stamp["config"]} for {size["teacher_iters"]} iterations '
            f'(log: {teacher_dir}/train.log)')
        train(stamp['config'], teacher_dir, size['teacher_iters'], 0, data_root)
        with open(stamp_file, 'w') as f:
            json.dump(stamp, f)
    results: List[RunResult] = [read_run('teacher', 0, teacher_dir)]
    say(f'teacher: COCO mAP {results[0].metrics["bbox_mAP"]:.3f}')

    # 3. the student alone and each distilled student, same schedule and seeds
    runs = [('student alone', STUDENT_CFG.format(det=det))]
    runs += [(name, METHOD_CFGS[name].format(det=det)) for name in args.methods]
    nd_options: List[str] = []
    if 'ND' in args.methods:  # ND's class means: one pass of the frozen teacher
        config, means = METHOD_CFGS['ND'].format(det=det), osp.join(out, 'class_means.pth')
        run([sys.executable, 'tools/class_means.py', config, '--out', means,
             '--cfg-options', f'model.teacher_ckpt={teacher_ckpt}', *data_options(data_root)],
            osp.join(out, 'class_means.log'))
        nd_options = class_means_options(config, means)
        say(f'ND: teacher class means written to {means}')
    for seed in size['seeds']:
        for name, config in runs:
            work_dir = osp.join(out, f'{name.split()[0].lower()}_seed{seed}')
            extra = [f'model.teacher_ckpt={teacher_ckpt}'] if name != 'student alone' else []
            if name == 'ND':
                extra += nd_options
            t0 = time.time()
            run_stamp = dict(config=config, iters=size['student_iters'], seed=seed,
                             options=extra, teacher=stamp, data=stamp['data'])
            done_file = osp.join(work_dir, 'demo_done.json')
            if osp.isfile(done_file) and json.load(open(done_file)) == run_stamp:
                result = read_run(name, seed, work_dir)
                say(f'{name} (seed {seed}): reusing the finished run in {work_dir}')
            else:
                say(f'{name} (seed {seed}): training {config} (log: {work_dir}/train.log)')
                train(config, work_dir, size['student_iters'], seed, data_root, extra)
                result = read_run(name, seed, work_dir)
                with open(done_file, 'w') as f:
                    json.dump(run_stamp, f)
            results.append(result)
            say(f'{name} (seed {seed}): COCO mAP {result.metrics["bbox_mAP"]:.3f} '
                f'in {time.time() - t0:.0f}s')

    # 4. the report
    table = format_table(results)
    print('\n' + table + '\n', flush=True)
    md_file = osp.join(out, 'results.md')
    png_file = osp.join(out, 'results.png')
    plot_results(results, png_file)
    with open(md_file, 'w') as f:
        f.write(markdown_report(results, detector=det, size=size,
                                minutes=(time.time() - start) / 60, plot=osp.basename(png_file)))
    say(f'wrote {md_file} and {png_file}')


def class_means_options(config: str, means_file: str) -> List[str]:
    """Point every loss of ``config`` that reads class means (ND) at ``means_file``."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, config))
    return [f'model.distill_losses.{name}.loss.class_means={means_file}'
            for name, binding in cfg.model.distill_losses.items()
            if 'class_means' in binding['loss']]


if __name__ == '__main__':
    main()
