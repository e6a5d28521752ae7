"""Student-only checkpoints: what stock mmdet / mmpretrain tools load."""
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict

import torch

STUDENT_PREFIX = 'student.'


def student_checkpoint(checkpoint: Dict) -> Dict:
    """The student part of a distiller checkpoint.

    Returns ``dict(meta=..., state_dict=...)``: the ``student.*`` weights without the
    prefix, and the original ``meta`` (``dataset_meta``, epoch, iter...). The teacher was
    never saved; connectors, bridges, loss buffers, optimizer and schedulers are dropped.

    A checkpoint of a run with MMEngine's ``EMAHook`` (RTMDet, YOLOX) holds the averaged
    weights as its ``state_dict`` (the raw ones go to ``ema_state_dict``): the export is
    the EMA student, the one those families evaluate and ship.
    ``meta['mmkd_export']['weights']`` says which: ``'ema'`` or ``'raw'``.

    Raises:
        ValueError: ``checkpoint`` holds no ``student.*`` weights.
    """
    state = checkpoint.get('state_dict', checkpoint)
    student = OrderedDict((k[len(STUDENT_PREFIX):], v) for k, v in state.items()
                          if k.startswith(STUDENT_PREFIX))
    if not student:
        raise ValueError('not a distiller checkpoint: it has no "student." weights '
                         '(a plain detector checkpoint needs no export).')
    meta = dict(checkpoint.get('meta', {}))
    meta['mmkd_export'] = dict(
        dropped=sorted({
            k.split('.', 2)[0] + '.' + k.split('.', 2)[1]
            for k in state if not k.startswith(STUDENT_PREFIX) and '.' in k
        }),
        weights='ema' if 'ema_state_dict' in checkpoint else 'raw')
    return dict(meta=meta, state_dict=student)


def export_student(src: str, dst: str) -> str:
    """Write the student-only checkpoint of the distiller checkpoint ``src`` to ``dst``
    (written to a temporary file first, then renamed, so a crash leaves no half file)."""
    if not osp.isfile(src):
        raise FileNotFoundError(f'checkpoint {src!r} not found')
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    exported = student_checkpoint(checkpoint)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(exported, tmp)
    os.replace(tmp, dst)
    return dst
