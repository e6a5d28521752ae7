"""Per-step cost of distillation: student alone, teacher forward alone, distilled step.

    python tools/benchmark.py                      # every CPU-sized distillation config
    python tools/benchmark.py --full               # the full-size ones (GPU recommended)
    python tools/benchmark.py --configs A.py B.py  # just these

Prints a table and writes it to docs/benchmark.md (with the machine it ran on). See
:mod:`mmkd.apis.benchmark` for what is measured and how.
"""
import argparse
import glob
import os
import os.path as osp
import platform
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)

import torch  # noqa: E402

import mmkd  # noqa: E402,F401
from mmkd.apis.benchmark import peak_memory_in_subprocess, time_variants  # noqa: E402


def default_configs(full: bool) -> list:
    pattern = '*_coco.py' if full else '*_synth.py'
    found = sorted(glob.glob(osp.join(REPO, 'configs', '*', pattern)))
    return [c for c in found if '/synthetic/' not in c and '/teachers/' not in c]


def machine() -> str:
    if torch.cuda.is_available():
        return f'{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), torch {torch.__version__}'
    return (f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
            f'{torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU only')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--configs', nargs='+', help='distillation configs to measure')
    parser.add_argument('--full', action='store_true', help='the full-size configs')
    parser.add_argument('--steps', type=int, default=5, help='timed steps per variant')
    parser.add_argument('--batch-size', type=int, default=None)
    parser.add_argument('--img-size', type=int, default=None)
    parser.add_argument('--no-memory', action='store_true', help='skip the memory runs')
    parser.add_argument('--out', default=osp.join(REPO, 'docs', 'benchmark.md'))
    args = parser.parse_args()
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    batch_size = args.batch_size or (2 if args.full else 8)
    img_size = args.img_size or (800 if args.full and device == 'cuda' else
                                 320 if args.full else 128)
    configs = args.configs or default_configs(args.full)

    header = ('| config | student (s) | teacher fwd (s) | distilled (s) | overhead '
              'distilled / (student + teacher) | peak mem student / distilled (MiB) |')
    rows = [header, '|---|---|---|---|---|---|']
    for config in configs:
        name = osp.relpath(config, REPO)
        print(f'benchmark: {name} ...', flush=True)
        t = time_variants(config, steps=args.steps, batch_size=batch_size,
                          img_size=img_size, device=device)
        ratio = t['distill'] / (t['student'] + t['teacher'])
        if args.no_memory:
            memory = 'not measured'
        else:
            mem = {v: peak_memory_in_subprocess(config, v, device, batch_size, img_size)
                   for v in ('student', 'distill')}
            memory = f'{mem["student"]:.0f} / {mem["distill"]:.0f}'
        row = (f'| `{name}` | {t["student"]:.3f} | {t["teacher"]:.3f} | {t["distill"]:.3f} '
               f'| {ratio:.2f} | {memory} |')
        print(row, flush=True)
        rows.append(row)

    text = '\n'.join([
        '# Distillation cost per training step', '',
        f'Measured by `python tools/benchmark.py{" --full" if args.full else ""}` on: '
        f'{machine()}.', '',
        f'Batch {batch_size} of {img_size}×{img_size} images; median of {args.steps} steps '
        'per variant after one warm-up, variants interleaved, each step re-seeded (same RoI '
        'sampling). The teacher column is the teacher\'s forward alone as the distiller '
        'runs it (no grad). Overhead 1.00 = the distill losses and connectors cost nothing '
        'beyond running both networks. Peak memory: peak growth of the resident set over two '
        'training steps from the built model (activations, gradients, optimizer state), in '
        'a fresh process, on CPU (sampled every 2 ms; includes allocator caching); '
        '`torch.cuda.max_memory_allocated` on GPU.', '',
        *rows, ''
    ])
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(text)
    print(f'written to {args.out}')


if __name__ == '__main__':
    main()
