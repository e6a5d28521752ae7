"""Compute the teacher's per-class mean embeddings for an ND (KD++) config.

    python tools/class_means.py CONFIG [--out FILE] [--max-images N] [--loss NAME]
                                [--rois {teacher,student}] [--student-checkpoint CKPT]
                                [--device DEV] [--cfg-options k=v ...]

Builds the distiller of CONFIG, loads its teacher checkpoint (strictly), runs the frozen
teacher over the training set and writes the class-means file the ND loss reads when
training starts. ``--out`` defaults to the loss's own ``class_means`` path
(``work_dirs/<config name>/class_means.pth`` in mmkd's configs). For ND on Faster R-CNN
RoI embeddings, ``--rois`` chooses the RoIs: the teacher's own sampled proposals
(``teacher``, default) or, as the ND authors, the ones the student samples in
distillation training (``student``; its weights from ``--student-checkpoint``, a
student or distiller checkpoint, else the config's ``load_from``, else its own init).
Then train as usual:

    python tools/train.py CONFIG
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from mmengine.config import Config, DictAction  # noqa: E402

import mmkd  # noqa: E402,F401  (registers mmkd's models and losses)
from mmkd.apis.class_means import write_class_means  # noqa: E402
from mmkd.utils.cli import allow_mmengine_checkpoints  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Per-class mean teacher embeddings for ND')
    parser.add_argument('config', help='the distillation config (with an ND loss)')
    parser.add_argument('--out', help="output file (default: the ND loss's class_means)")
    parser.add_argument('--max-images', type=int, help='use at most N training images')
    parser.add_argument('--loss', help='name of the ND loss, if the config has several')
    parser.add_argument('--rois', choices=('teacher', 'student'), default='teacher',
                        help="Faster R-CNN ND: the teacher's own sampled RoIs (default) or "
                        "the student's (the ND authors' recipe)")
    parser.add_argument('--student-checkpoint',
                        help='with --rois student: the student (or distiller) checkpoint')
    parser.add_argument('--device', help="default: 'cuda' if available, else 'cpu'")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.teacher_ckpt=PATH')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    allow_mmengine_checkpoints()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    try:
        write_class_means(cfg, args.out, args.loss, args.max_images, args.device,
                          rois=args.rois, student_checkpoint=args.student_checkpoint)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f'class_means: {err}')


if __name__ == '__main__':
    main()
