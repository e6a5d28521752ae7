"""ND class means of a classification teacher (tools/class_means.py on a CIFAR-format
config) equal an independent recomputation from the pickled images."""
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from mmkd.apis.class_means import write_class_means
from mmkd.models.distillers.teacher import resolve_model_config
from mmkd.testing import tiny_classification_data
from mmkd.utils.class_means import load_class_means

from helpers import CLS_CONFIGS

ND = osp.join(CLS_CONFIGS, 'synthetic', 'nd_resnet32-resnet8_synth.py')


@pytest.fixture(scope='module')
def nd_setup(tiny_cls_data, tmp_path_factory):
    """The synthetic ND config on the tiny data, no augmentation, with a teacher whose BN
    statistics are realistic (a few train-mode passes)."""
    root = tmp_path_factory.mktemp('cm')
    cfg = tiny_classification_data(Config.fromfile(ND), tiny_cls_data, batch_size=16)
    cfg.train_dataloader.dataset.pipeline = [dict(type='PackInputs')]
    init_default_scope('mmpretrain')
    teacher_cfg = resolve_model_config(cfg.model.teacher)
    torch.manual_seed(0)
    teacher = MODELS.build(teacher_cfg)
    teacher.init_weights()
    with torch.no_grad():
        for _ in range(3):
            teacher.extract_feat(torch.randn(32, 3, 32, 32))
    cfg.model.teacher_ckpt = str(root / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), cfg.model.teacher_ckpt)
    return cfg, teacher.eval(), str(root)


def test_class_means_equal_an_independent_recomputation(nd_setup, tiny_cls_data):
    cfg, teacher, root = nd_setup
    out = write_class_means(cfg, out=osp.join(root, 'means.pth'), progress=False)
    means, counts, meta = load_class_means(out)
    assert means.shape == (100, 64) and counts.tolist() == [1] * 100
    assert meta['includes_background'] is False and meta['num_classes'] == 100
    assert 'input of the classifier fc' in meta['feature']

    with open(osp.join(tiny_cls_data, 'cifar', 'cifar-100-python', 'train'), 'rb') as f:
        raw = pickle.load(f, encoding='latin1')
    pre = cfg.data_preprocessor
    x = raw['data'].reshape(-1, 3, 32, 32).astype(np.float64)
    x = (x - np.array(pre.mean).reshape(1, 3, 1, 1)) / np.array(pre.std).reshape(1, 3, 1, 1)
    with torch.no_grad():
        stage3 = teacher.backbone(torch.from_numpy(x).float())[-1].double()
    emb = stage3.mean(dim=(2, 3)).numpy()  # global average pooling, float64
    labels = np.array(raw['fine_labels'])
    expected = np.stack([emb[labels == k].mean(0) for k in range(100)])
    np.testing.assert_allclose(means.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_nd_on_another_feature_is_refused(nd_setup, tmp_path):
    cfg, _, _ = nd_setup
    cfg = cfg.copy()
    cfg.model.distill_losses.nd.inputs.teacher_emb = 'teacher.backbone.layer3'
    with pytest.raises(ValueError, match="teacher_emb must be 'teacher.embedding'"):
        write_class_means(cfg, out=str(tmp_path / 'x.pth'), progress=False)
