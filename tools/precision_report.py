"""What the opt-in reduced-precision options change in what the losses see.

    python tools/precision_report.py CONFIG [--teacher-ckpt CKPT] [--batches N]
                                     [--cfg-options k=v ...]

On the first N batches of CONFIG's training set, with the teacher of CONFIG (or
``--teacher-ckpt``): the relative error of every teacher-side loss input with
``teacher_dtype='bf16'``, and, for dense LSH losses, the fraction of teacher hash bits
that ``hash_dtype='bf16'`` flips. See :mod:`mmkd.apis.precision_report`.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

import mmkd  # noqa: E402,F401
from mmkd.apis.precision_report import hash_bit_flips, teacher_dtype_errors  # noqa: E402
from mmkd.utils.cli import allow_mmengine_checkpoints  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--teacher-ckpt', help="defaults to the config's teacher_ckpt")
    parser.add_argument('--batches', type=int, default=4)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    allow_mmengine_checkpoints()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    ckpt = args.teacher_ckpt or cfg.model.teacher_ckpt
    print(f'# {args.config}, teacher {ckpt}, {args.batches} training batches, '
          f'torch {torch.__version__}')
    print('\n| loss input | relative error, bf16 teacher |\n|---|---|')
    for key, value in teacher_dtype_errors(cfg, ckpt, 'bf16', args.batches).items():
        print(f'| `{key}` | {value:.2e} |')
    flips = hash_bit_flips(cfg, ckpt, args.batches)
    if flips:
        print('\n| dense LSH loss | teacher bits flipped by bf16 hashing |\n|---|---|')
        for name, fraction in flips.items():
            print(f'| `{name}` | {100 * fraction:.3f} % |')


if __name__ == '__main__':
    main()
