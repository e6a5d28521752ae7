"""Generate the synthetic classification dataset in the CIFAR-100 format (and, with
``--imagenet-out``, a tiny ImageNet-layout folder).

Example (from the repository root)::

    python tools/generate_cls_data.py --out data/synthetic_cls --seed 0

writes ``data/synthetic_cls/cifar-100-python/{train,test,meta}`` (100 classes = 5 shapes x
5 colours x 4 textures; 100 train / 20 test images per class by default), read by
``SyntheticCIFAR100`` (mmpretrain's ``CIFAR100`` without the md5 checks). Regeneration is
skipped when ``<out>/generate_params.json`` records the same parameters; ``--force``
regenerates anyway.
"""
import argparse
import importlib.util
import os.path as osp
import sys
import time

if importlib.util.find_spec('mmkd') is None:  # run from a source checkout
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmkd.datasets.synthetic_classification import (  # noqa: E402
    STAMP_FILE, cls_generation_params, generate_cifar_dataset, generate_imagenet_folder,
    read_cls_stamp)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the deterministic synthetic classification dataset '
        '(CIFAR-100 pickle format) used by mmkd tests and demos.')
    parser.add_argument('--out', default='data/synthetic_cls', help='output root directory')
    parser.add_argument('--num-classes', type=int, default=100)
    parser.add_argument('--num-train-per-class', type=int, default=100)
    parser.add_argument('--num-test-per-class', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--imagenet-out', help='also write a tiny ImageNet-layout folder here')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if the stamp matches')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Entry point; returns the generator summary (``{}`` when skipped)."""
    args = parse_args(argv)
    summary = {}
    params = cls_generation_params(args.num_classes, args.num_train_per_class,
                                   args.num_test_per_class, args.seed)
    if not args.force and read_cls_stamp(args.out) == params:
        print(f'{args.out}: up to date ({osp.join(args.out, STAMP_FILE)} matches these '
              'parameters), skipping generation')
    else:
        start = time.perf_counter()
        summary = generate_cifar_dataset(args.out, args.num_classes,
                                         args.num_train_per_class,
                                         args.num_test_per_class, args.seed)
        n = summary['num_images']
        print(f'{args.out}: wrote {n["train"]} train / {n["test"]} test images of '
              f'{args.num_classes} classes (CIFAR-100 format, seed {args.seed}) in '
              f'{time.perf_counter() - start:.1f}s')
    if args.imagenet_out:
        folder = generate_imagenet_folder(args.imagenet_out, seed=args.seed)
        print(f'{args.imagenet_out}: wrote an ImageNet-layout folder '
              f'({folder["num_images"]})')
    return summary


if __name__ == '__main__':
    main()
