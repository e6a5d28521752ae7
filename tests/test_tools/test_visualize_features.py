"""tools/visualize_features.py: teacher vs student feature maps as a PNG."""
import glob
import json
import os.path as osp

import cv2
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers import load_tool, repo_path, save_random_checkpoint

FITNET = 'configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py'
TEACHER = 'configs/synthetic/retinanet_r18_fpn_teacher_synth.py'
STUDENT = 'configs/synthetic/retinanet_r18w16_fpn_student_synth.py'

tool = load_tool('visualize_features')


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A random teacher, a distiller checkpoint (student seed 0) and a student trained
    "alone" (seed 1), as files."""
    from mmdet.registry import MODELS
    root = tmp_path_factory.mktemp('visualize')
    teacher = save_random_checkpoint(Config.fromfile(repo_path(TEACHER)).model,
                                     str(root / 'teacher.pth'))
    init_default_scope('mmdet')
    torch.manual_seed(0)
    distiller = MODELS.build(Config.fromfile(repo_path(FITNET)).model)
    distiller.student.init_weights()
    distilled = str(root / 'distilled.pth')
    torch.save(dict(state_dict=distiller.state_dict()), distilled)
    alone = save_random_checkpoint(Config.fromfile(repo_path(STUDENT)).model,
                                   str(root / 'alone.pth'), seed=1)
    return dict(teacher=teacher, distilled=distilled, alone=alone)


@pytest.fixture(scope='module')
def image(tiny_det_data, tmp_path_factory) -> str:
    """A generated image cut to 100x128, so the batch is padded to 128x128."""
    src = sorted(glob.glob(osp.join(tiny_det_data, 'VOCdevkit/SYNTH/JPEGImages/*.jpg')))[0]
    path = str(tmp_path_factory.mktemp('image') / 'cut.png')
    cv2.imwrite(path, cv2.imread(src)[:100])
    return path


def test_png_of_every_fpn_level_with_the_student_alone(checkpoints, image, tmp_path):
    out = tmp_path / 'maps'
    written = tool.visualize(tool.parse_args([
        repo_path(FITNET), checkpoints['distilled'], image, '--out', str(out),
        '--teacher-ckpt', checkpoints['teacher'], '--compare', checkpoints['alone']]))
    assert torch.is_grad_enabled()  # the tool's no_grad ends with the call
    png = written['neck']
    assert osp.basename(png) == 'feature_maps_neck.png'
    picture = cv2.imread(png)
    # 4 levels x (image + 3 networks x 2 kinds) panels
    assert picture is not None and picture.shape[0] > 500 and picture.shape[1] > 1000
    assert picture.std() > 10  # not a blank canvas
    with open(out / 'feature_maps.json') as f:
        report = json.load(f)['neck']
    assert list(report) == ['P2', 'P3', 'P4', 'P5']  # named from the strides 4-32
    for level in report.values():
        assert set(level) == {'student (distilled)', 'student alone'}
        for net in level.values():
            assert set(net) == {'mean', 'attention'}
            assert all(v is None or -1.0 <= v <= 1.0 for v in net.values())
    # the coarsest level, P5, is 4x4 (4x4 after cropping the padding too): every map has
    # a pattern, so every correlation is a number (a 1x1 map's is None:
    # test_maps_and_correlation)
    for level in report.values():
        for net in level.values():
            assert all(v is not None for v in net.values())
    # different students, different maps
    assert report['P2']['student (distilled)'] != report['P2']['student alone']


def test_same_weights_give_the_same_correlations_and_padding_is_cropped(
        checkpoints, image, tmp_path):
    args = tool.parse_args([repo_path(FITNET), checkpoints['distilled'], image, '--out',
                            str(tmp_path), '--teacher-ckpt', checkpoints['teacher'],
                            '--compare', checkpoints['distilled'], '--levels', '0', '1'])
    cfg = Config.fromfile(args.config)
    distiller, alone = tool.build_networks(cfg, args.checkpoint, args.teacher_ckpt,
                                           args.compare)
    inputs, samples = tool.load_image(cfg, image, distiller)
    assert tuple(inputs.shape[-2:]) == (128, 128) and samples[0].img_shape == (100, 128)
    feats = tool.record(distiller.student, inputs, samples, ['neck'], 'student')['neck']
    assert len(feats) == 4 and tuple(feats[0].shape[-2:]) == (32, 32)
    assert tuple(tool.crop_to_image(feats[0], samples[0]).shape[-2:]) == (25, 32)  # 100/4
    tool.visualize(args)
    with open(tmp_path / 'feature_maps.json') as f:
        report = json.load(f)['neck']
    assert list(report) == ['P2', 'P3']
    for level in report.values():
        assert level['student (distilled)'] == level['student alone']


def test_maps_and_correlation():
    feat = torch.tensor([[[1., -1.], [2., 0.]], [[3., 1.], [0., 0.]]])  # [C=2, 2, 2]
    maps = tool.channel_maps(feat)
    torch.testing.assert_close(maps['mean'], torch.tensor([[2., 0.], [1., 0.]]))
    torch.testing.assert_close(maps['attention'], torch.tensor([[10., 2.], [4., 0.]]))
    a = torch.tensor([[1., 2.], [3., 4.]])
    assert tool.correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert tool.correlation(a, -a) == pytest.approx(-1.0)
    assert tool.correlation(a, torch.ones(2, 2)) is None
    assert tool.correlation(torch.full((1, 1), 3.), torch.full((1, 1), 2.)) is None  # 1x1


def test_bad_input_is_a_clear_error(checkpoints, image, tmp_path):
    with pytest.raises(SystemExit, match='not a distillation config'):
        tool.visualize(tool.parse_args([repo_path(STUDENT), checkpoints['alone'], image,
                                        '--out', str(tmp_path)]))
    with pytest.raises(SystemExit, match='out of range'):
        tool.visualize(tool.parse_args([
            repo_path(FITNET), checkpoints['distilled'], image, '--out', str(tmp_path),
            '--teacher-ckpt', checkpoints['teacher'], '--levels', '7']))
