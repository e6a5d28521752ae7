"""Resuming skips a checkpoint cut short on disk, and never silently restarts."""
import os

import pytest
import torch

from mmkd.utils.checkpoint import (check_resume_checkpoint, find_resumable_checkpoint,
                                   resume_candidates)


def write(path, step):
    torch.save(dict(state_dict=dict(w=torch.full((64, 64), float(step))), meta=dict(iter=step)),
               path)


def truncate(path):
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size // 2)


@pytest.fixture
def work_dir(tmp_path):
    for step in (1, 2, 3):
        write(tmp_path / f'iter_{step}.pth', step)
    write(tmp_path / 'iter_3_student.pth', 3)  # an export: never a resume candidate
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_3.pth'))
    return tmp_path


def test_candidates_are_newest_first_without_exports(work_dir):
    names = [os.path.basename(p) for p in resume_candidates(str(work_dir))]
    assert names == ['iter_3.pth', 'iter_2.pth', 'iter_1.pth']


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous(work_dir):
    assert find_resumable_checkpoint(str(work_dir)) == str(work_dir / 'iter_3.pth')
    truncate(work_dir / 'iter_3.pth')
    assert find_resumable_checkpoint(str(work_dir)) == str(work_dir / 'iter_2.pth')


def test_all_checkpoints_broken_is_an_error_not_a_fresh_start(work_dir):
    for step in (1, 2, 3):
        truncate(work_dir / f'iter_{step}.pth')
    with pytest.raises(RuntimeError, match='no checkpoint in .* can be resumed'):
        find_resumable_checkpoint(str(work_dir))


def test_an_empty_work_dir_starts_from_scratch(tmp_path):
    assert find_resumable_checkpoint(str(tmp_path)) is None


def test_an_explicit_broken_checkpoint_names_the_good_one(work_dir):
    truncate(work_dir / 'iter_3.pth')
    with pytest.raises(RuntimeError, match=r'cannot resume from .*iter_3.pth: .*iter_2.pth'):
        check_resume_checkpoint(str(work_dir / 'iter_3.pth'))
    check_resume_checkpoint(str(work_dir / 'iter_2.pth'))  # a good one passes
