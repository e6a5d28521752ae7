"""Generate the synthetic shapes detection dataset (COCO and/or VOC layout).

Example (from the repository root)::

    python tools/generate_data.py --out data/synthetic_det --seed 0

Regeneration is skipped when ``<out>/generate_params.json`` records the same
parameters (and generator version); pass ``--force`` to regenerate anyway.
"""
import argparse
import importlib.util
import os.path as osp
import sys
import time

if importlib.util.find_spec('mmkd') is None:  # run from a source checkout
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmkd.datasets.synthetic_detection import (STAMP_FILE,  # noqa: E402
                                               generate_detection_dataset,
                                               generation_params, read_stamp)


def parse_args(argv=None) -> argparse.Namespace:
    """Parse command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Generate the deterministic synthetic shapes detection '
        'dataset used by mmkd tests and demos.')
    parser.add_argument(
        '--out', default='data/synthetic_det', help='output root directory')
    parser.add_argument('--num-train', type=int, default=600)
    parser.add_argument('--num-val', type=int, default=150)
    parser.add_argument('--img-size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--formats',
        nargs='+',
        default=['coco', 'voc'],
        choices=['coco', 'voc'],
        help='annotation formats to write (images are always written)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='regenerate even if the stamp matches')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Entry point; returns the generator summary (``{}`` when skipped)."""
    args = parse_args(argv)
    params = generation_params(args.num_train, args.num_val, args.img_size,
                               args.seed, args.formats)
    if not args.force and read_stamp(args.out) == params:
        print(f'{args.out}: up to date ({osp.join(args.out, STAMP_FILE)} '
              'matches these parameters), skipping generation')
        return {}
    start = time.perf_counter()
    summary = generate_detection_dataset(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=args.img_size,
        seed=args.seed,
        formats=args.formats)
    elapsed = time.perf_counter() - start
    n_img, n_obj = summary['num_images'], summary['num_objects']
    print(f'{args.out}: wrote {n_img["train"]} train / {n_img["val"]} val '
          f'images ({n_obj["train"]} / {n_obj["val"]} objects, '
          f'{args.img_size}px, seed {args.seed}, formats '
          f'{"+".join(params["formats"])}) in {elapsed:.1f}s')
    return summary


if __name__ == '__main__':
    main()
