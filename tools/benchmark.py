"""Per-step cost of distillation: student alone, teacher forward alone, distilled step.

    python tools/benchmark.py                        # every CPU-sized distillation config
    python tools/benchmark.py --configs A.py B.py    # just these
    python tools/benchmark.py --variant lsh_bf16:model.distill_losses.lsh.loss.hash_dtype=bf16
    python tools/benchmark.py --full                 # COCO configs at 1333x800, batch 2:
                                                     #   on CPU peak memory of one step
    python tools/benchmark.py --full --device cuda --amp   # time + memory on a CUDA GPU
    python tools/benchmark.py --rss-iters 1000       # resident set stays flat?

Each run rewrites its own section of docs/benchmark.md (``--out``), between
``<!-- mmkd-benchmark:NAME begin/end -->`` markers (a missing section is appended; the
rest of the file is kept). Besides each config as it is, the built-in variants of
``--variants`` (default: all, where they apply) and every ``--variant NAME:key=value``
are measured; see :mod:`mmkd.apis.benchmark` for what is measured and how.
"""
import argparse
import glob
import os
import os.path as osp
import platform
import re
import shlex
import sys
from typing import Dict, List, Optional, Sequence, Tuple

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)

import torch  # noqa: E402

import mmkd  # noqa: E402,F401
from mmkd.apis.benchmark import (BUILTIN_VARIANTS, ConfigVariant,  # noqa: E402
                                 goals_for, load_config, overhead, parse_variant,
                                 peak_memory_in_subprocess, rss_over_iterations,
                                 time_variants)

FULL_SHAPE = (800, 1333)  # (h, w): mmdet's 1333x800 training scale


def default_configs(full: bool) -> List[str]:
    pattern = '*_coco.py' if full else '*_synth.py'
    found = sorted(glob.glob(osp.join(REPO, 'configs', '*', pattern)))
    return [c for c in found if '/synthetic/' not in c and '/teachers/' not in c]


def machine(device: str) -> str:
    if device.startswith('cuda'):
        return (f'{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), '
                f'torch {torch.__version__}')
    return (f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
            f'{torch.get_num_threads()} torch thread{"s" if torch.get_num_threads() > 1 else ""}, '
            f'torch {torch.__version__}, CPU only')


def command_line() -> str:
    """The command that ran, without ``--out`` (the file it is written into)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg == '--out' or arg.startswith('--out='):
            skip = arg == '--out'
            continue
        args.append(shlex.quote(arg))
    return ' '.join(['python tools/benchmark.py'] + args)


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the section ``name`` (between its markers) replaced by ``body``, or
    ``body`` appended in new markers."""
    begin, end = f'<!-- mmkd-benchmark:{name} begin -->', f'<!-- mmkd-benchmark:{name} end -->'
    block = f'{begin}\n{body.strip()}\n{end}'
    pattern = re.compile(re.escape(begin) + r'.*?' + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip('\n') + ('\n\n' if text.strip() else '') + block + '\n'


def write_section(path: str, name: str, body: str) -> None:
    text = open(path).read() if osp.isfile(path) else ''
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(replace_section(text, name, body))
    print(f'section {name!r} written to {path}')


def applicable_variants(config: str, variants: Sequence[ConfigVariant]
                        ) -> Dict[str, dict]:
    """name -> options of the variants that apply to ``config``."""
    cfg = load_config(config)
    found = {}
    for variant in variants:
        options = variant.options_for(cfg)
        if options is not None:
            found[variant.name] = options
    return found


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return '—' if value is None else f'{value:.{digits}f}'


def goal_cells(config: str, options: dict, device: str, full: bool,
               figures: Dict[str, Optional[float]]) -> Tuple[str, str]:
    """(goal text, met marks) of a row; ``figures``: metric -> measured value."""
    goals = goals_for(load_config(config), options, device, full)
    goals = [g for g in goals if figures.get(g.metric) is not None] or goals
    marks = []
    for goal in goals:
        met = goal.met(figures.get(goal.metric))
        marks.append('—' if met is None else 'met' if met else '**not met**')
    return '; '.join(g.text() for g in goals), '; '.join(marks)


def run_steps(args, device: str, configs: List[str], variants: List[ConfigVariant]) -> str:
    full = args.full
    batch_size = args.batch_size or (2 if full else 8)
    img = (args.img_size, args.img_size) if args.img_size else FULL_SHAPE if full else (128, 128)
    steps = args.steps if args.steps is not None else (
        0 if full and device == 'cpu' else 5)
    memory_steps = 1 if full and device == 'cpu' else 2
    rows = ['| config | variant | student (s) | teacher fwd (s) | distilled (s) | overhead '
            '| goal | met | peak mem student / teacher / distilled (MiB) | extra (MiB) |',
            '|---|---|---|---|---|---|---|---|---|---|']
    for config in configs:
        name = osp.relpath(config, REPO)
        extra = applicable_variants(config, variants)
        print(f'benchmark: {name} (variants: {", ".join(extra) or "none"}) ...', flush=True)
        times = time_variants(config, steps=steps, batch_size=batch_size, img_size=img,
                              device=device, variants=extra, amp=args.amp) if steps else {}
        mem: Dict[str, float] = {}
        if not args.no_memory:
            for key, options in [('student', None), ('teacher', None), ('distill', None)] + \
                    [(f'distill:{v}', o) for v, o in extra.items()]:
                mem[key] = peak_memory_in_subprocess(
                    config, key.partition(':')[0], device, batch_size, img, options,
                    args.amp, steps=memory_steps)
        for variant, options in [('', {})] + list(extra.items()):
            suffix = f':{variant}' if variant else ''
            ratio = overhead(times, variant) if times else None
            distilled = mem.get('distill' + suffix)
            extra_mib = None if distilled is None else \
                distilled - mem['student'] - mem['teacher']
            goal, met = goal_cells(config, options, device, full,
                                   dict(overhead=ratio, extra_mib=extra_mib))
            memory = (f'{mem["student"]:.0f} / {mem["teacher"]:.0f} / {distilled:.0f}'
                      if distilled is not None else 'not measured')
            row = (f'| `{name}` | {variant or "plain"} | {_fmt(times.get("student"))} '
                   f'| {_fmt(times.get("teacher" + suffix))} '
                   f'| {_fmt(times.get("distill" + suffix))} | {_fmt(ratio, 2)} '
                   f'| {goal} | {met} | {memory} | {_fmt(extra_mib, 0)} |')
            print(row, flush=True)
            rows.append(row)
    size = f'batch {batch_size} of {img[1]}×{img[0]} images'
    timing = (f'median of {steps} step{"s" if steps > 1 else ""} per variant after one '
              'warm-up, interleaved, re-seeded' if steps else 'not timed (memory only)')
    title = (f'## {"Full size" if full else "CPU-sized configs"}: '
             f'{"CUDA" if device.startswith("cuda") else "CPU"}'
             f'{", AMP (fp16 autocast)" if args.amp else ""}')
    return '\n'.join([
        title, '',
        f'`{command_line()}` on {machine(device)}: {size}; {timing}; peak memory over '
        f'{memory_steps} step{"s" if memory_steps > 1 else ""}, a fresh process each.', '',
        *rows, ''])


def run_rss(args, device: str, configs: List[str], variants: List[ConfigVariant]) -> str:
    batch_size = args.batch_size or 2
    img = args.img_size or 128
    rows = ['| config | variant | RSS after warm-up / half / end (MiB) | growth end − warm-up '
            '(MiB) | growth end − half (MiB) | max after warm-up (MiB) | live tensors '
            'warm-up / end | flat |',
            '|---|---|---|---|---|---|---|---|']
    for config in configs:
        name = osp.relpath(config, REPO)
        for variant, options in [('', None)] + list(applicable_variants(config, variants).items()):
            print(f'rss: {name} {variant or "plain"}, {args.rss_iters} iterations ...',
                  flush=True)
            r = rss_over_iterations(config, args.rss_iters, args.rss_warmup, batch_size, img,
                                    device, options, log=lambda m: print(m, flush=True))
            flat = (r['tensors_end'] <= r['tensors_warmup']
                    and r['late_growth_mib'] <= args.rss_tolerance)
            row = (f'| `{name}` | {variant or "plain"} | {r["rss_warmup_mib"]:.0f} / '
                   f'{r["rss_half_mib"]:.0f} / {r["rss_end_mib"]:.0f} | {r["growth_mib"]:+.1f} '
                   f'| {r["late_growth_mib"]:+.1f} | {r["rss_max_mib"]:.0f} '
                   f'| {r["tensors_warmup"]} / {r["tensors_end"]} '
                   f'| {"yes" if flat else "**no**"} |')
            print(row, flush=True)
            rows.append(row)
    warmup = args.rss_warmup or max(10, args.rss_iters // 10)
    return '\n'.join([
        f'## Memory over {args.rss_iters} iterations', '',
        f'`{command_line()}` on {machine(device)}: batch {batch_size} of {img}×{img} '
        f'images, `train_step` as the runner calls it, a fresh copy of the batch each '
        f'iteration; warm-up {warmup} iterations. Flat: no more live tensors at the end '
        f'than after the warm-up, and the resident set grew by at most '
        f'{args.rss_tolerance:g} MiB over the second half of the run (a leak grows all '
        'along; the allocator\'s high-water mark, e.g. with a varying number of RoIs, '
        'settles once).', '',
        *rows, ''])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', nargs='+', help='distillation configs to measure')
    parser.add_argument('--full', action='store_true',
                        help='the full-size (COCO) configs at 1333x800, batch 2')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--amp', action='store_true',
                        help='fp16 autocast + loss scaling (mmengine AmpOptimWrapper); CUDA')
    parser.add_argument('--steps', type=int, default=None,
                        help='timed steps per variant (default 5; 0 = memory only, the '
                        'default of --full on CPU)')
    parser.add_argument('--batch-size', type=int, default=None)
    parser.add_argument('--img-size', type=int, default=None, help='square images of this side')
    parser.add_argument('--variants', nargs='*', default=None,
                        help=f'built-in variants to add where they apply (default all: '
                        f'{", ".join(sorted(BUILTIN_VARIANTS))}; with --rss-iters none); '
                        'none: give it no names')
    parser.add_argument('--variant', action='append', default=[], metavar='NAME:KEY=VALUE,...',
                        help='an extra variant of each config it applies to (its keys\' '
                        'parents exist), e.g. lsh_bf16:model.distill_losses.lsh.loss.'
                        'hash_dtype=bf16; repeatable')
    parser.add_argument('--no-memory', action='store_true', help='skip the memory runs')
    parser.add_argument('--rss-iters', type=int, default=0,
                        help='instead of timing: run this many training steps per config '
                        'and report the resident set after warm-up and at the end')
    parser.add_argument('--rss-warmup', type=int, default=None,
                        help='warm-up iterations of --rss-iters (default max(10, N/10))')
    parser.add_argument('--rss-tolerance', type=float, default=8.0,
                        help='RSS growth (MiB) still called flat')
    parser.add_argument('--out', default=osp.join(REPO, 'docs', 'benchmark.md'),
                        help='markdown file whose section this run rewrites')
    args = parser.parse_args(argv)
    if args.amp and args.device != 'cuda':
        parser.error('--amp needs --device cuda (fp16 autocast is a GPU feature)')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available to this torch')
    if args.rss_iters and args.full:
        parser.error('--rss-iters runs the CPU-sized configs; drop --full')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    names = args.variants if args.variants is not None else \
        [] if args.rss_iters else sorted(BUILTIN_VARIANTS)
    variants = [BUILTIN_VARIANTS[n] if n in BUILTIN_VARIANTS else parse_variant(n)
                for n in names if n != 'none']
    variants += [parse_variant(v) for v in args.variant]
    configs = [osp.abspath(c) for c in args.configs] if args.configs else \
        default_configs(args.full)
    device = args.device
    if args.rss_iters:
        body, section = run_rss(args, device, configs, variants), f'rss-{device}'
    else:
        body = run_steps(args, device, configs, variants)
        section = f'{"full" if args.full else "small"}-{device}{"-amp" if args.amp else ""}'
    write_section(args.out, section, body)


if __name__ == '__main__':
    main()
