"""Choosing a checkpoint to resume from, skipping files that were cut short."""
import glob
import os.path as osp
import re
from typing import List, Optional, Tuple

import torch
from mmengine.logging import print_log


def checkpoint_is_readable(path: str) -> Tuple[bool, str]:
    """(True, '') if ``path`` loads completely; else (False, why)."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as err:  # truncated zip, bad pickle, empty file ...
        return False, f'{type(err).__name__}: {str(err).splitlines()[0][:200]}'
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        return False, 'no state_dict in it'
    return True, ''


def _step(path: str) -> int:
    match = re.search(r'(?:iter|epoch)_(\d+)\.pth$', osp.basename(path))
    return int(match.group(1)) if match else -1


def resume_candidates(work_dir: str) -> List[str]:
    """Training checkpoints in ``work_dir``, newest first: the one named in
    ``last_checkpoint``, then ``iter_*/epoch_*.pth`` by decreasing step (student-only
    exports are not resumable and are skipped)."""
    found = [p for p in glob.glob(osp.join(work_dir, '*.pth'))
             if not p.endswith('_student.pth') and _step(p) >= 0]
    found.sort(key=_step, reverse=True)
    last_file = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last_file):
        with open(last_file) as f:
            last = f.read().strip()
        if last:
            local = osp.join(work_dir, osp.basename(last))
            last = last if osp.isfile(last) else local
            found = [last] + [p for p in found if osp.abspath(p) != osp.abspath(last)]
    return found


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that loads; None if there is none at all.

    A file cut short on disk (killed job, full disk) is reported and the previous one is
    used. If checkpoints exist but none loads, resuming would silently restart from
    scratch, so this raises instead.
    """
    candidates = resume_candidates(work_dir)
    problems = []
    for path in candidates:
        ok, why = checkpoint_is_readable(path)
        if ok:
            if problems:
                print_log(f'mmkd: resuming from {path}, the newest checkpoint that loads; '
                          'skipped ' + '; '.join(problems), logger='current', level=30)
            return path
        problems.append(f'{path} ({why})')
    if problems:
        raise RuntimeError('no checkpoint in ' + work_dir + ' can be resumed: ' +
                           '; '.join(problems) + '. Delete them to start from scratch.')
    return None


def check_resume_checkpoint(path: str) -> None:
    """Refuse an explicitly given ``--resume PATH`` that does not load, naming the
    newest good checkpoint beside it."""
    ok, why = checkpoint_is_readable(path) if osp.isfile(path) else (False, 'no such file')
    if ok:
        return
    alternatives = [p for p in resume_candidates(osp.dirname(path) or '.')
                    if osp.abspath(p) != osp.abspath(path) and checkpoint_is_readable(p)[0]]
    hint = f'; the newest good one beside it is {alternatives[0]}' if alternatives else ''
    raise RuntimeError(f'cannot resume from {path}: {why}{hint}')
