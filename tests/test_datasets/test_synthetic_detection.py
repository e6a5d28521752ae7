"""Tests for the deterministic synthetic shapes detection dataset."""
import json
import os
import os.path as osp
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from helpers import load_tool, repo_path
from mmkd.datasets import (CLASSES, STAMP_FILE, coco_statistics,
                           detection_metainfo, generate_detection_dataset,
                           read_stamp, render_sample,
                           validate_coco_annotations)

NUM_TRAIN, NUM_VAL, IMG_SIZE = 12, 6, 128
IMG_PREFIX = 'VOCdevkit/SYNTH/JPEGImages/'


def _tree(root: str) -> dict:
    """Map relative path -> bytes for every file under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('synthetic_det'))
    summary = generate_detection_dataset(
        out, num_train=NUM_TRAIN, num_val=NUM_VAL, img_size=IMG_SIZE, seed=0)
    return out, summary


def test_layout_and_summary(dataset):
    out, summary = dataset
    voc = osp.join(out, 'VOCdevkit', 'SYNTH')
    assert summary['num_images'] == dict(train=NUM_TRAIN, val=NUM_VAL)
    assert sorted(os.listdir(osp.join(voc, 'JPEGImages'))) == [
        f'{i:06d}.jpg' for i in range(1, NUM_TRAIN + NUM_VAL + 1)
    ]
    assert len(os.listdir(osp.join(voc, 'Annotations'))) == NUM_TRAIN + NUM_VAL
    with open(osp.join(voc, 'ImageSets', 'Main', 'trainval.txt')) as f:
        assert f.read().split() == [f'{i:06d}' for i in range(1, 13)]
    with open(osp.join(voc, 'ImageSets', 'Main', 'test.txt')) as f:
        assert f.read().split() == [f'{i:06d}' for i in range(13, 19)]
    for split in ('train', 'val'):
        data = _load(osp.join(out, 'annotations', f'instances_{split}.json'))
        assert summary['coco'][split] == osp.join(
            out, 'annotations', f'instances_{split}.json')
        assert len(data['annotations']) == summary['num_objects'][split]
        assert [c['id'] for c in data['categories']] == [1, 2, 3, 4]
        assert tuple(c['name'] for c in data['categories']) == CLASSES
        for img in data['images']:
            assert img['file_name'] == f'{img["id"]:06d}.jpg'
            decoded = cv2.imread(osp.join(out, IMG_PREFIX, img['file_name']))
            assert decoded.shape == (img['height'], img['width'], 3)
    assert read_stamp(out)['seed'] == 0
    meta = detection_metainfo()
    assert meta['classes'] == CLASSES and len(meta['palette']) == len(CLASSES)


def test_determinism(tmp_path):
    kw = dict(num_train=4, num_val=2, img_size=64)
    a = _tree(generate_detection_dataset(str(tmp_path / 'a'), seed=3,
                                         **kw)['out_dir'])
    b = _tree(generate_detection_dataset(str(tmp_path / 'b'), seed=3,
                                         **kw)['out_dir'])
    c = _tree(generate_detection_dataset(str(tmp_path / 'c'), seed=4,
                                         **kw)['out_dir'])
    assert len(a) == 6 * 2 + 2 + 2 + 1  # jpg+xml, 2 image sets, 2 json, stamp
    assert a == b
    assert a.keys() == c.keys()
    differing = [k for k in a if a[k] != c[k]]
    assert all(k in differing for k in a if k.endswith('.jpg'))
    assert 'annotations/instances_train.json' in differing


def test_val_images_independent_of_num_train(tmp_path):
    a = generate_detection_dataset(str(tmp_path / 'a'), 3, 2, 64, seed=0)
    b = generate_detection_dataset(str(tmp_path / 'b'), 5, 2, 64, seed=0)
    with open(osp.join(a['img_dir'], '000004.jpg'), 'rb') as f1, \
            open(osp.join(b['img_dir'], '000006.jpg'), 'rb') as f2:
        assert f1.read() == f2.read()


def test_annotations_valid(dataset):
    out, _ = dataset
    for split in ('train', 'val'):
        path = osp.join(out, 'annotations', f'instances_{split}.json')
        info = validate_coco_annotations(path)
        data = _load(path)
        assert info['num_images'] == len(data['images'])
        per_image = {img['id']: 0 for img in data['images']}
        for ann in data['annotations']:
            x, y, w, h = ann['bbox']
            assert all(isinstance(v, int) for v in ann['bbox'])
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= IMG_SIZE and y + h <= IMG_SIZE
            assert 1 <= ann['category_id'] <= len(CLASSES)
            assert 0 < ann['area'] <= w * h and ann['iscrowd'] == 0
            per_image[ann['image_id']] += 1
        # 1..6 objects drawn, the last one is never occluded
        assert all(1 <= n <= 6 for n in per_image.values())
    for name in os.listdir(osp.join(out, 'VOCdevkit/SYNTH/Annotations')):
        root = ET.parse(osp.join(out, 'VOCdevkit/SYNTH/Annotations',
                                 name)).getroot()
        assert root.find('filename').text == name.replace('.xml', '.jpg')
        assert int(root.find('size/width').text) == IMG_SIZE
        assert int(root.find('size/depth').text) == 3
        for obj in root.findall('object'):
            assert obj.find('name').text in CLASSES
            assert obj.find('difficult').text == '0'
            b = [int(obj.find(f'bndbox/{k}').text)
                 for k in ('xmin', 'ymin', 'xmax', 'ymax')]
            assert 1 <= b[0] < b[2] <= IMG_SIZE
            assert 1 <= b[1] < b[3] <= IMG_SIZE


@pytest.mark.parametrize('corrupt, expected', [
    (lambda a: a['annotations'][1]['bbox'].__setitem__(2, -3), 'width'),
    (lambda a: a['annotations'][1].__setitem__('category_id', 9),
     'unknown category_id 9'),
    (lambda a: a['annotations'][1]['bbox'].__setitem__(0, 120),
     'outside the 128x128 image'),
    (lambda a: a['annotations'][1].__setitem__('image_id', 999),
     'image_id 999 is not in images'),
])
def test_validate_rejects_corrupt(dataset, tmp_path, corrupt, expected):
    out, _ = dataset
    data = _load(osp.join(out, 'annotations', 'instances_train.json'))
    corrupt(data)
    bad = str(tmp_path / 'bad.json')
    with open(bad, 'w') as f:
        json.dump(data, f)
    ann_id = data['annotations'][1]['id']
    with pytest.raises(ValueError) as err:
        validate_coco_annotations(bad)
    msg = str(err.value)
    assert '\n' not in msg
    assert bad in msg and f'annotation id={ann_id}' in msg and expected in msg
    assert 'tools/generate_data.py' in msg


@pytest.mark.parametrize('corrupt, expected', [
    (lambda a: a['annotations'][1]['bbox'].__setitem__(2, -3), 'non-positive width'),
    (lambda a: a['annotations'][1].__setitem__('category_id', 9), 'unknown category_id 9'),
])
def test_config_reader_refuses_a_corrupt_json(dataset, tmp_path, corrupt, expected):
    """The CPU configs' train dataset, built from its config as the runner builds it,
    stops on a broken annotation (mmdet's stock reader would drop the box silently)."""
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    out, _ = dataset
    data = _load(osp.join(out, 'annotations', 'instances_train.json'))
    corrupt(data)
    os.makedirs(tmp_path / 'annotations')
    bad = str(tmp_path / 'annotations' / 'instances_train.json')
    with open(bad, 'w') as f:
        json.dump(data, f)
    cfg = Config.fromfile(repo_path('configs/synthetic/retinanet_r18w16_fpn_student_synth.py'))
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = str(tmp_path) + '/'
    assert dataset_cfg.type == 'SyntheticCocoDataset'
    with pytest.raises(ValueError) as err:
        DATASETS.build(dataset_cfg)
    msg = str(err.value)
    assert '\n' not in msg and bad in msg and expected in msg
    assert f"annotation id={data['annotations'][1]['id']}" in msg
    # the same config with mmdet's stock class reads the file and loses the box
    dataset_cfg.type = 'CocoDataset'
    stock = DATASETS.build(dataset_cfg)
    assert sum(len(stock.get_data_info(i)['instances']) for i in range(len(stock))) == \
        len(data['annotations']) - 1
    # an intact file reads the same through both classes
    dataset_cfg.data_root = out.rstrip('/') + '/'
    checked = DATASETS.build(dict(dataset_cfg, type='SyntheticCocoDataset'))
    stock = DATASETS.build(dataset_cfg)
    assert [checked.get_data_info(i) for i in range(len(checked))] == \
        [stock.get_data_info(i) for i in range(len(stock))]


def test_validate_rejects_unreadable(tmp_path):
    bad = tmp_path / 'broken.json'
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match='not valid JSON'):
        validate_coco_annotations(str(bad))
    with pytest.raises(ValueError, match='cannot read'):
        validate_coco_annotations(str(tmp_path / 'missing.json'))


@pytest.mark.parametrize('seed', range(40))
def test_boxes_tight_against_pixels(seed):
    """A single drawn object changes exactly the pixels inside its box: the
    box of the changed pixels must equal the annotated box (no slack)."""
    rng = np.random.default_rng([seed, 7])
    img, objects, background = render_sample(
        rng, 64 + 32 * (seed % 3), num_objects=1, noise=False,
        return_background=True)
    assert len(objects) == 1
    bg = np.clip(np.round(background), 0, 255).astype(np.uint8)
    changed = (img != bg).any(axis=2)
    ys, xs = np.nonzero(changed)
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert box == objects[0].bbox.tolist()
    # the object's own mask: same extent and nearly every pixel changed
    obj = objects[0]
    assert changed[obj.mask].mean() > 0.99 and not changed[~obj.mask].any()
    assert obj.area == obj.mask.sum() and obj.visible_fraction == 1.0


def test_render_objects_and_occlusion():
    sides, fractions, labels = [], [], []
    for i in range(60):
        _, objects = render_sample(np.random.default_rng([0, 0, i]), 128)
        assert 1 <= len(objects) <= 6
        for obj in objects:
            ys, xs = np.nonzero(obj.mask)
            assert obj.bbox.tolist() == [xs.min(), ys.min(), xs.max() + 1,
                                         ys.max() + 1]
            assert not (obj.visible & ~obj.mask).any()
            # never touching the last row/column keeps VOC xmax <= width
            assert obj.bbox[2] <= 127 and obj.bbox[3] <= 127
            sides.append(np.sqrt(np.prod(obj.bbox[2:] - obj.bbox[:2])))
            fractions.append(obj.visible_fraction)
            labels.append(obj.label)
        assert objects[-1].visible_fraction == 1.0
    fractions = np.array(fractions)
    assert fractions.min() >= 0.3 and (fractions < 1).sum() >= 5
    assert min(sides) <= 12 and max(sides) >= 50
    assert set(labels) == set(range(len(CLASSES)))


def test_files_match_renderer(dataset):
    """The written JPEGs and COCO boxes are those of ``render_sample``."""
    out, _ = dataset
    data = _load(osp.join(out, 'annotations', 'instances_val.json'))
    for k, img_info in enumerate(data['images']):
        rng = np.random.default_rng([0, 1, k])
        img, objects = render_sample(rng, IMG_SIZE)
        decoded = cv2.imread(osp.join(out, IMG_PREFIX, img_info['file_name']))
        # JPEG drops most of the pixel noise: compare smoothed images
        smooth = [cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.5)
                  for x in (decoded, img)]
        assert np.abs(smooth[0] - smooth[1]).mean() < 3
        boxes = [a['bbox'] for a in data['annotations']
                 if a['image_id'] == img_info['id']]
        assert boxes == [[int(o.bbox[0]), int(o.bbox[1]),
                          int(o.bbox[2] - o.bbox[0]),
                          int(o.bbox[3] - o.bbox[1])] for o in objects]


def test_statistics(dataset):
    out, summary = dataset
    stats = coco_statistics(summary['coco']['train'])
    assert stats['num_objects'] == summary['num_objects']['train']
    assert sum(stats['per_class'].values()) == stats['num_objects']
    assert sum(stats['sizes'].values()) == stats['num_objects']


def test_regeneration_removes_stale_files(tmp_path):
    out = str(tmp_path)
    generate_detection_dataset(out, 4, 2, 64, seed=0)
    generate_detection_dataset(out, 2, 1, 64, seed=0, formats=('coco', ))
    voc = osp.join(out, 'VOCdevkit', 'SYNTH')
    assert sorted(os.listdir(osp.join(voc, 'JPEGImages'))) == [
        '000001.jpg', '000002.jpg', '000003.jpg'
    ]
    assert os.listdir(osp.join(voc, 'Annotations')) == []
    assert os.listdir(osp.join(voc, 'ImageSets', 'Main')) == []
    assert read_stamp(out)['formats'] == ['coco']


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='unknown formats'):
        generate_detection_dataset(str(tmp_path), 1, 1, formats=('yolo', ))
    with pytest.raises(ValueError, match='img_size'):
        generate_detection_dataset(str(tmp_path), 1, 1, img_size=16)


def test_cli_skips_when_stamp_matches(tmp_path, capsys):
    cli = load_tool('generate_data')
    out = str(tmp_path / 'data')
    argv = ['--out', out, '--num-train', '3', '--num-val', '2', '--img-size',
            '64', '--seed', '5']
    summary = cli.main(argv)
    assert summary['num_images'] == dict(train=3, val=2)
    assert 'wrote 3 train / 2 val images' in capsys.readouterr().out
    assert cli.main(argv) == {}
    assert 'skipping generation' in capsys.readouterr().out
    os.remove(osp.join(out, STAMP_FILE))  # e.g. an interrupted run
    assert cli.main(argv)['num_images'] == dict(train=3, val=2)
    assert cli.main(argv[:-1] + ['6'])['params']['seed'] == 6


def _instances(data_info: dict) -> tuple:
    return ([inst['bbox'] for inst in data_info['instances']],
            [inst['bbox_label'] for inst in data_info['instances']])


def test_stock_mmdet_datasets_agree(dataset):
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset, VOCDataset
    out, summary = dataset
    for split, image_set in (('train', 'trainval'), ('val', 'test')):
        coco = CocoDataset(
            data_root=out,
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=IMG_PREFIX),
            metainfo=detection_metainfo(),
            pipeline=[],
            test_mode=split == 'val')
        voc = VOCDataset(
            data_root=osp.join(out, 'VOCdevkit'),
            ann_file=f'SYNTH/ImageSets/Main/{image_set}.txt',
            data_prefix=dict(sub_data_root='SYNTH/'),
            metainfo=detection_metainfo(),
            pipeline=[],
            test_mode=split == 'val')
        n = summary['num_images'][split]
        assert len(coco) == len(voc) == n
        n_obj = 0
        for i in range(n):
            c, v = coco.get_data_info(i), voc.get_data_info(i)
            assert osp.normpath(c['img_path']) == osp.normpath(v['img_path'])
            assert osp.isfile(c['img_path'])
            assert (c['height'], c['width']) == (v['height'], v['width'])
            assert _instances(c) == _instances(v)
            assert all(inst['ignore_flag'] == 0 for inst in c['instances'])
            n_obj += len(c['instances'])
        assert n_obj == summary['num_objects'][split]
        assert coco.metainfo['classes'] == voc.metainfo['classes'] == CLASSES


def test_stock_mmdet_pipeline_loads(dataset):
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules()
    out, _ = dataset
    ds = CocoDataset(
        data_root=out,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img=IMG_PREFIX),
        metainfo=detection_metainfo(),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')
        ])
    sample = ds[0]
    assert tuple(sample['inputs'].shape) == (3, IMG_SIZE, IMG_SIZE)
    gt = sample['data_samples'].gt_instances
    info = ds.get_data_info(0)
    np.testing.assert_allclose(gt.bboxes.numpy() if hasattr(gt.bboxes, 'numpy')
                               else gt.bboxes.tensor.numpy(),
                               np.array(_instances(info)[0], np.float32))
