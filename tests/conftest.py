"""Shared fixtures: one torch thread, a tiny generated detection dataset."""
import pytest
import torch

from helpers import REPO  # noqa: F401  (puts the environment in place, see helpers)
from mmkd.datasets import generate_detection_dataset


@pytest.fixture(scope='session', autouse=True)
def one_torch_thread():
    """One OpenMP thread: on a busy 2-core machine two threads spin-wait on each other
    and every CPU test runs several times slower (measured 3-6x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='session')
def tiny_det_data(tmp_path_factory) -> str:
    """A 12-train / 6-val image generated detection dataset (COCO + VOC layouts)."""
    root = str(tmp_path_factory.mktemp('synthetic_det'))
    generate_detection_dataset(root, num_train=12, num_val=6, img_size=128, seed=0)
    return root
