"""Write the student-only checkpoint of a distiller checkpoint.

    python tools/export_student.py work_dirs/X/iter_600.pth --out student.pth

The result loads into the student's own config with stock mmdet / mmpretrain tools
(``tools/test.py STUDENT_CONFIG student.pth``) and gives the same results as the
distiller checkpoint tested with the distillation config.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from mmkd.utils.export import export_student  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('checkpoint', help='distiller checkpoint (from tools/train.py)')
    parser.add_argument('--out', required=True, help='where to write the student')
    args = parser.parse_args()
    try:
        dst = export_student(args.checkpoint, args.out)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f'export_student: {err}')
    print(f'student-only checkpoint written to {dst}')


if __name__ == '__main__':
    main()
