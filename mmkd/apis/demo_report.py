"""Reading finished runs and reporting them: the demo's table, Markdown and plot."""
import glob
import json
import os.path as osp
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')


@dataclass
class RunResult:
    """One training run: its name (teacher, student alone, a method), seed, final COCO
    metrics and its training-loss curve ``[(iteration, loss), ...]``."""
    name: str
    seed: int
    metrics: Dict[str, float]
    loss_curve: List[Tuple[int, float]] = field(default_factory=list)


def read_run(name: str, seed: int, work_dir: str) -> RunResult:
    """Parse MMEngine's ``<work_dir>/<timestamp>/vis_data/scalars.json`` of the latest
    run in ``work_dir``: the last ``coco/*`` evaluation and the logged total loss."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not logs:
        raise FileNotFoundError(f'no MMEngine scalars.json under {work_dir}: did the run '
                                'finish?')
    metrics: Dict[str, float] = {}
    curve: List[Tuple[int, float]] = []
    with open(logs[-1]) as f:
        for line in f:
            record = json.loads(line)
            if 'loss' in record:
                curve.append((int(record['step']), float(record['loss'])))
            found = {k.split('/', 1)[1]: v for k, v in record.items()
                     if k.startswith('coco/')}
            if found:
                metrics = found
    if not all(k in metrics for k in METRICS):
        raise ValueError(f'{logs[-1]} has no COCO bbox evaluation ({sorted(metrics)})')
    return RunResult(name, seed, {k: float(metrics[k]) for k in METRICS}, curve)


def _group(results: Sequence[RunResult]) -> Dict[str, List[RunResult]]:
    groups: Dict[str, List[RunResult]] = {}
    for result in results:
        groups.setdefault(result.name, []).append(result)
    return groups


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary_rows(results: Sequence[RunResult],
                 bases: Optional[Dict[str, str]] = None) -> List[Dict]:
    """One row per run name: mean and spread (sample std over seeds) of each metric, the
    AP gain over the student alone, the share of the teacher–student AP gap it closes and,
    for a run with a base in ``bases`` (run name -> name of the run it is compared with),
    the AP gain over that base.

    The gain over the base is *real* (``row['real']``) only when both have at least two
    seeds and the gain exceeds the seed spread of each (``None``: not decidable with one
    seed).
    """
    bases = bases or {}
    groups = _group(results)
    teacher = _mean_std([r.metrics['bbox_mAP'] for r in groups.get('teacher', [])] or [0.])[0]
    student = _mean_std([r.metrics['bbox_mAP'] for r in groups.get('student alone', [])]
                        or [0.])[0]
    rows = []
    for name, runs in groups.items():
        row = dict(name=name, seeds=len(runs))
        for metric in METRICS:
            row[metric] = _mean_std([r.metrics[metric] for r in runs])
        ap, std = row['bbox_mAP']
        if name not in ('teacher', 'student alone'):
            row['gain'] = ap - student
            gap = teacher - student
            row['gap_closed'] = (ap - student) / gap if gap > 0 else float('nan')
        base = bases.get(name)
        if base is not None and base in groups:
            base_runs = groups[base]
            base_ap, base_std = _mean_std([r.metrics['bbox_mAP'] for r in base_runs])
            gain = ap - base_ap
            row.update(base=base, gain_base=gain, spread=(std, base_std))
            if len(runs) > 1 and len(base_runs) > 1:
                row['real'] = bool(gain > std and gain > base_std)
            else:
                row['real'] = None
        rows.append(row)
    return rows


def _cell(value: Tuple[float, float], seeds: int) -> str:
    mean, std = value
    return f'{100 * mean:.1f} ± {100 * std:.1f}' if seeds > 1 else f'{100 * mean:.1f}'


HEADER = ['run', 'seeds', 'AP', 'AP50', 'AP75', 'vs student', 'base', 'vs base (spreads)',
          'real gain', 'gap closed']


def _table_lines(results: Sequence[RunResult],
                 bases: Optional[Dict[str, str]] = None) -> List[List[str]]:
    lines = [list(HEADER)]
    for row in summary_rows(results, bases):
        if 'gain_base' in row:
            run_std, base_std = row['spread']
            vs_base = f'{100 * row["gain_base"]:+.1f}'
            if row['real'] is not None:  # spreads exist only with two seeds or more
                vs_base += f' (±{100 * run_std:.1f} / ±{100 * base_std:.1f})'
            real = {True: 'yes', False: 'no', None: '1 seed'}[row['real']]
        else:
            vs_base = real = ''
        lines.append([
            row['name'], str(row['seeds']),
            *[_cell(row[m], row['seeds']) for m in METRICS],
            f'{100 * row["gain"]:+.1f}' if 'gain' in row else '',
            row.get('base', ''), vs_base, real,
            f'{100 * row["gap_closed"]:.0f} %' if 'gap_closed' in row else '',
        ])
    return lines


def format_table(results: Sequence[RunResult],
                 bases: Optional[Dict[str, str]] = None) -> str:
    """A plain-text table for the terminal (COCO AP in %, mean ± std over seeds)."""
    lines = _table_lines(results, bases)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ['  '.join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(text)


def markdown_table(results: Sequence[RunResult],
                   bases: Optional[Dict[str, str]] = None) -> str:
    lines = _table_lines(results, bases)
    out = ['| ' + ' | '.join(lines[0]) + ' |', '|' + '---|' * len(lines[0])]
    out += ['| ' + ' | '.join(line) + ' |' for line in lines[1:]]
    return '\n'.join(out)


def markdown_report(results: Sequence[RunResult], detector: str, size: dict,
                    minutes: float, plot: str, bases: Optional[Dict[str, str]] = None,
                    notes: Sequence[str] = (), jobs: int = 1) -> str:
    import platform
    import torch
    machine = (f'{platform.processor() or platform.machine()}, the teacher alone with {jobs} '
               f'torch thread(s), then {jobs} run(s) side by side with one torch thread each, '
               f'{"CUDA" if torch.cuda.is_available() else "CPU only"}')
    recipe = f' ({size["student_recipe"]})' if size.get('student_recipe') else ''
    return '\n'.join([
        f'# mmkd demo: {detector} on the generated data', '',
        f'COCO box AP (%) on {size["num_val"]} generated validation images; students trained '
        f'{size["student_iters"]} iterations{recipe} with seeds {list(size["seeds"])}, '
        f'the teacher {size["teacher_iters"]}. Mean ± standard deviation over seeds. '
        '"vs student" = AP gain over the student alone; "vs base" = AP gain over the run '
        'named in "base", with the seed spreads (std) of the run and of its base; '
        '"real gain" = yes only when that gain exceeds both spreads. '
        '"gap closed" = (distilled − student alone) / (teacher − student alone).', '',
        markdown_table(results, bases), '',
        *[f'{note}' for note in notes], '',
        f'![mAP and training loss]({plot})', '',
        f'Machine: {machine}. Whole demo: {minutes:.1f} min.', ''
    ])


def plot_results(results: Sequence[RunResult], path: str) -> None:
    """A PNG: the mAP of each run (bars, seeds as dots) and the training-loss curves."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = _group(results)
    fig, (ax_map, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(groups)
    means = [statistics.fmean(r.metrics['bbox_mAP'] for r in groups[n]) * 100 for n in names]
    ax_map.bar(range(len(names)), means, color='#9ecae1')
    for i, name in enumerate(names):
        ax_map.plot([i] * len(groups[name]), [r.metrics['bbox_mAP'] * 100 for r in groups[name]],
                    'k.', ms=6)
    ax_map.set_xticks(range(len(names)), names, rotation=30, ha='right')
    ax_map.set_ylabel('COCO box AP (%)')
    ax_map.set_title('mAP per run (dots: seeds)')
    for name in names:
        if name == 'teacher':
            continue
        curve = groups[name][0].loss_curve
        if curve:
            ax_loss.plot([c[0] for c in curve], [c[1] for c in curve], label=name, lw=1)
    ax_loss.set_xlabel('iteration')
    ax_loss.set_ylabel('total training loss (first seed)')
    ax_loss.set_title('training loss')
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
