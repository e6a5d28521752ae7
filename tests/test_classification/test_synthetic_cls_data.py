"""The generated classification data: CIFAR-100 file format, determinism, mmpretrain's
own CIFAR-100 reader, the ImageNet-layout folder."""
import colorsys
import hashlib
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmpretrain.datasets import CIFAR10, CIFAR100, ImageNet
from mmpretrain.registry import DATASETS

from mmkd.datasets import (SyntheticCIFAR100, class_names, generate_cifar_dataset,
                           generate_imagenet_folder, read_cls_stamp)
from mmkd.datasets.synthetic_classification import COLOURS, class_factors

from helpers import REPO, load_tool


def md5(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def load(path: str) -> dict:
    with open(path, 'rb') as f:
        return pickle.load(f, encoding='latin1')


@pytest.fixture(scope='module')
def small_set(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('cls_small'))
    generate_cifar_dataset(root, num_classes=100, num_train_per_class=4,
                           num_test_per_class=2, seed=3)
    return root


def test_files_have_the_cifar100_layout(small_set):
    folder = osp.join(small_set, 'cifar-100-python')
    train, test, meta = (load(osp.join(folder, n)) for n in ('train', 'test', 'meta'))
    for split, n in ((train, 400), (test, 200)):
        assert {'data', 'fine_labels', 'coarse_labels', 'filenames',
                'batch_label'} <= set(split)
        assert split['data'].dtype == np.uint8 and split['data'].shape == (n, 3072)
        assert np.bincount(split['fine_labels'], minlength=100).tolist() == \
            [n // 100] * 100
    assert meta['fine_label_names'] == class_names(100)
    assert len(set(meta['fine_label_names'])) == 100
    factors = class_factors(100)
    assert train['coarse_labels'] == [factors[k][0] for k in train['fine_labels']]
    assert read_cls_stamp(small_set)['num_train_per_class'] == 4


def test_generation_is_deterministic(small_set, tmp_path):
    again = str(tmp_path / 'again')
    generate_cifar_dataset(again, num_classes=100, num_train_per_class=4,
                           num_test_per_class=2, seed=3)
    for name in ('train', 'test', 'meta'):
        assert md5(osp.join(again, 'cifar-100-python', name)) == \
            md5(osp.join(small_set, 'cifar-100-python', name))
    # the test split does not depend on the size of the training split
    other = str(tmp_path / 'other')
    generate_cifar_dataset(other, num_classes=100, num_train_per_class=1,
                           num_test_per_class=2, seed=3)
    assert md5(osp.join(other, 'cifar-100-python', 'test')) == \
        md5(osp.join(small_set, 'cifar-100-python', 'test'))
    # another seed, other images
    generate_cifar_dataset(other, num_classes=100, num_train_per_class=1,
                           num_test_per_class=2, seed=4)
    assert md5(osp.join(other, 'cifar-100-python', 'test')) != \
        md5(osp.join(small_set, 'cifar-100-python', 'test'))


def test_mmpretrain_cifar100_reader_loads_it(small_set):
    """SyntheticCIFAR100 runs CIFAR100's own loading code; only the checksums and the
    class-name source differ. The stock class refuses the files (wrong md5)."""
    assert SyntheticCIFAR100.load_data_list is CIFAR10.load_data_list
    assert SyntheticCIFAR100.base_folder == CIFAR100.base_folder
    init_default_scope('mmpretrain')
    ds = DATASETS.build(dict(type='SyntheticCIFAR100', data_root=small_set, split='test',
                             pipeline=[dict(type='PackInputs')]))
    raw = load(osp.join(small_set, 'cifar-100-python', 'test'))
    assert len(ds) == 200
    assert list(ds.metainfo['classes']) == class_names(100)  # from the meta file
    for i in (0, 57, 199):
        item = ds[i]
        assert int(item['data_samples'].gt_label) == raw['fine_labels'][i]
        expected = raw['data'][i].reshape(3, 32, 32)  # R, G, B planes
        np.testing.assert_array_equal(item['inputs'].numpy(), expected)
    with pytest.raises(Exception, match='Download failed|not integrated|Cannot find'):
        CIFAR100(data_root=small_set, split='test', download=False)
    with pytest.raises(RuntimeError, match='generate_cls_data'):
        SyntheticCIFAR100(data_root=small_set + '/missing', split='test')


def test_images_show_their_class_colour(small_set):
    """The rendering matches the labels: the most saturated pixels' hue (the object's
    fill, saturation >= 0.55) falls in the class's colour family for most images."""
    raw = load(osp.join(small_set, 'cifar-100-python', 'train'))
    factors = class_factors(100)
    hues = np.array(list(COLOURS.values()))
    right = 0
    for row, label in zip(raw['data'], raw['fine_labels']):
        rgb = row.reshape(3, -1).T.astype(np.float64) / 255
        hsv = np.array([colorsys.rgb_to_hsv(*p) for p in rgb])
        top = hsv[np.argsort(hsv[:, 1] * hsv[:, 2])[-60:]]  # vivid pixels
        angle = np.angle(np.exp(2j * np.pi * top[:, 0]).mean(), deg=True) % 360
        dist = np.abs((hues - angle + 180) % 360 - 180)
        right += int(dist.argmin() == factors[label][1])
    assert right / len(raw['fine_labels']) > 0.75, right


def test_fewer_classes_are_distinct_combinations():
    names = class_names(20)
    assert len(set(names)) == 20 and set(names) <= set(class_names(100))
    shapes = {n.split('_')[0] for n in names}
    assert len(shapes) >= 4  # a spread of factors, not the first 20 of one shape
    with pytest.raises(ValueError, match='num_classes'):
        class_names(101)


def test_imagenet_folder_is_read_by_mmpretrain_imagenet(tmp_path):
    root = str(tmp_path / 'in')
    out = generate_imagenet_folder(root, num_classes=3, num_train_per_class=2,
                                   num_val_per_class=1, img_size=48)
    init_default_scope('mmpretrain')
    ds = ImageNet(data_root=root, split='train',
                  pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    assert len(ds) == 6 and out['num_images'] == {'train': 6, 'val': 3}
    assert sorted(int(ds[i]['data_samples'].gt_label) for i in range(6)) == \
        [0, 0, 1, 1, 2, 2]
    assert tuple(ds[0]['inputs'].shape) == (3, 48, 48)
    assert len(ImageNet(data_root=root, split='val')) == 3


def test_cli_skips_when_up_to_date(tmp_path, capsys):
    out = str(tmp_path / 'cli')
    args = ['--out', out, '--num-classes', '10', '--num-train-per-class', '2',
            '--num-test-per-class', '1']
    first = subprocess.run([sys.executable, 'tools/generate_cls_data.py', *args], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert 'wrote 20 train / 10 test images of 10 classes' in first.stdout
    tool = load_tool('generate_cls_data')
    assert tool.main(args) == {}
    assert 'up to date' in capsys.readouterr().out
