"""Fixtures of the classification tests: tiny generated data (CIFAR format and an
ImageNet-layout folder), random-init teacher checkpoints."""
import pytest

import mmkd  # noqa: F401  (before mmpretrain: see mmkd.utils.torchvision_compat)
from mmkd.testing import RandomCheckpointCache, generate_tiny_classification_data



@pytest.fixture(scope='session')
def tiny_cls_data(tmp_path_factory) -> str:
    """``<root>/cifar/`` (100 classes x 1 train / 1 test image, CIFAR-100 format) and
    ``<root>/imagenet/`` (4 classes, 2 train / 1 val JPEGs each)."""
    return generate_tiny_classification_data(str(tmp_path_factory.mktemp('tiny_cls')))


@pytest.fixture(scope='session')
def cls_teacher_ckpts(tmp_path_factory) -> RandomCheckpointCache:
    return RandomCheckpointCache(str(tmp_path_factory.mktemp('cls_teacher_ckpts')),
                                 scope='mmpretrain')
