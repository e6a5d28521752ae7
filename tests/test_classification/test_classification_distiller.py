"""The classification distiller's contract: frozen eval-mode teacher from config +
checkpoint (strict), student-only predict, sources equal to independent computations,
gradients only to the student and connectors."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmkd.hooks import LSHBiasInitHook
from mmkd.models.distillers import ClassificationDistiller
from mmkd.models.distillers.classification_distiller import batch_labels

MEAN, STD = [120.0, 110.0, 100.0], [50.0, 55.0, 60.0]
PREPROCESSOR = dict(type='ClsDataPreprocessor', mean=MEAN, std=STD, num_classes=10)


def classifier_cfg(arch: str, width: int = 64, num_classes: int = 10) -> dict:
    return dict(type='ImageClassifier', backbone=dict(type='CIFARResNet', arch=arch),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=width))


STUDENT = classifier_cfg('resnet8')
# trained with the same normalisation (a teacher dict without one would see raw pixels)
TEACHER = dict(classifier_cfg('resnet14'), data_preprocessor=PREPROCESSOR)
KD = dict(kd=dict(loss=dict(type='KDLoss', temperature=4.0),
                  inputs=dict(student_logits='student.logits',
                              teacher_logits='teacher.logits')))


def save_teacher(cfg: dict, path: str, seed: int = 0) -> str:
    """A random teacher with realistic BN statistics (a few train-mode passes)."""
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.extract_feat(torch.randn(16, 3, 32, 32))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(seed=seed)), path)
    return path


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory) -> str:
    return save_teacher(TEACHER, str(tmp_path_factory.mktemp('t') / 'teacher.pth'))


def build(teacher_ckpt, distill_losses=KD, student=STUDENT, teacher=TEACHER,
          load=True, **kwargs) -> ClassificationDistiller:
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(type='ClassificationDistiller', student=student,
                              teacher=teacher, teacher_ckpt=teacher_ckpt,
                              data_preprocessor=PREPROCESSOR,
                              distill_losses=distill_losses, **kwargs))
    if load:
        model.init_weights()
    return model


def raw_batch(n: int = 4, seed: int = 0, labels=None) -> dict:
    """What the dataloader yields: uint8 ``[3, 32, 32]`` images and DataSamples."""
    gen = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8)
              for _ in range(n)]
    labels = labels if labels is not None else [(3 * i + seed) % 10 for i in range(n)]
    return dict(inputs=images,
                data_samples=[DataSample().set_gt_label(int(k)) for k in labels])


def normalised(batch: dict) -> torch.Tensor:
    x = torch.stack(batch['inputs']).float()
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_teacher_frozen_eval_and_out_of_the_module_tree(teacher_ckpt):
    model = build(teacher_ckpt)
    assert model.teacher_loaded
    own = {id(p) for p in model.parameters()}
    assert not own & {id(p) for p in model.teacher.parameters()}
    assert not any(k.startswith('teacher.') for k in model.state_dict())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert model.student.training and not model.teacher.training
    expected = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_teacher_checkpoint_is_loaded_strictly(teacher_ckpt, tmp_path):
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    partial = dict(state)
    partial.pop('head.fc.bias')
    torch.save(dict(state_dict=partial), tmp_path / 'partial.pth')
    with pytest.raises(ValueError, match='1 missing keys: head.fc.bias'):
        build(str(tmp_path / 'partial.pth'))
    other = save_teacher(classifier_cfg('resnet8'), str(tmp_path / 'resnet8.pth'))
    with pytest.raises(ValueError, match='does not match the teacher config'):
        build(other)  # a resnet8 checkpoint for the resnet14 teacher
    with pytest.raises(ValueError, match='teacher_ckpt is not set'):
        build(None)


def test_class_counts_must_match(teacher_ckpt):
    with pytest.raises(ValueError, match='student predicts 10 classes but the teacher 7'):
        build(teacher_ckpt, teacher=classifier_cfg('resnet14', num_classes=7), load=False)


def test_unknown_sources_and_head_are_build_errors(teacher_ckpt):
    bad = copy.deepcopy(KD)
    bad['kd']['inputs']['teacher_logits'] = 'teacher.backbone.layer9'
    with pytest.raises(KeyError, match="teacher has no module 'backbone.layer9'"):
        build(teacher_ckpt, bad, load=False)
    with pytest.raises(TypeError, match="'head' is a LinearClsHead, not the classifier"):
        build(teacher_ckpt, head_fc='head', load=False)


def test_sources_equal_independent_computations(teacher_ckpt):
    """``{side}.logits`` / ``.embedding`` / ``.stages``, ``labels`` and a module path,
    against the networks run by hand on the normalised images."""
    probe = dict(
        logits=dict(loss=dict(type='KDLoss'),
                    inputs=dict(student_logits='student.logits',
                                teacher_logits='teacher.logits')),
        emb=dict(loss=dict(type='NDLoss', class_means=torch.randn(10, 64)),
                 inputs=dict(student_emb='student.embedding',
                             teacher_emb='teacher.embedding', labels='labels')),
        stages=dict(loss=dict(type='FeatureMSELoss'),
                    inputs=dict(student_feat='student.stages',
                                teacher_feat='teacher.backbone.layer2'),
                    levels=(1, )))
    model = build(teacher_ckpt, probe)
    batch = raw_batch(labels=[4, 0, 9, 4])
    got = model.collect_loss_inputs(batch, ['logits', 'emb', 'stages'])
    x = normalised(batch)
    student, teacher = model.student.eval(), model.teacher
    with torch.no_grad():
        s_stages = [student.backbone.layer1(torch.relu(student.backbone.bn1(
            student.backbone.conv1(x))))]
        s_stages += [student.backbone.layer2(s_stages[0])]
        s_stages += [student.backbone.layer3(s_stages[1])]
        t_stages = [teacher.backbone.layer1(torch.relu(teacher.backbone.bn1(
            teacher.backbone.conv1(x))))]
        t_stages += [teacher.backbone.layer2(t_stages[0])]
        t_stages += [teacher.backbone.layer3(t_stages[1])]
        s_emb, t_emb = s_stages[-1].mean((2, 3)), t_stages[-1].mean((2, 3))
        s_logits = s_emb @ student.head.fc.weight.t() + student.head.fc.bias
        t_logits = t_emb @ teacher.head.fc.weight.t() + teacher.head.fc.bias
    (logits, ), (emb, ), (stages, ) = got['logits'], got['emb'], got['stages']
    torch.testing.assert_close(logits['student_logits'], s_logits)
    torch.testing.assert_close(logits['teacher_logits'], t_logits)
    torch.testing.assert_close(emb['student_emb'], s_emb)
    torch.testing.assert_close(emb['teacher_emb'], t_emb)
    assert emb['labels'].dtype == torch.long and emb['labels'].tolist() == [4, 0, 9, 4]
    torch.testing.assert_close(stages['student_feat'], s_stages[1])  # level 1 of stages
    torch.testing.assert_close(stages['teacher_feat'], t_stages[1])


def test_kd_loss_is_the_batchmean_kl_of_the_two_networks(teacher_ckpt):
    """Training step: distill.loss_kd against a float64 KL of independently computed
    logits (student in train mode: batch statistics), the student's CE as loss_cls."""
    model = build(teacher_ckpt)
    model.train()
    reference = copy.deepcopy(model.student).train()
    batch = raw_batch(8, seed=1)
    data = model.data_preprocessor(batch, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) == {'loss_cls', 'distill.loss_kd'}
    x = normalised(batch)
    with torch.no_grad():
        zs = reference.head(reference.extract_feat(x)).double() / 4
        zt = model.teacher.head(model.teacher.extract_feat(x)).double() / 4
    kl = (zt.softmax(1) * (zt.log_softmax(1) - zs.log_softmax(1))).sum(1).mean() * 16
    assert math.isclose(float(losses['distill.loss_kd'].detach()), float(kl), rel_tol=2e-4)
    ce = torch.nn.functional.cross_entropy(zs * 4, torch.tensor(
        [int(s.gt_label) for s in batch['data_samples']]))
    assert math.isclose(float(losses['loss_cls'].detach()), float(ce), rel_tol=1e-5)
    total, log_vars = model.parse_losses(losses)
    assert log_vars['loss'] is total  # the logged total is the optimised one
    assert math.isclose(float(total.detach()), float(ce + kl), rel_tol=1e-5)


def test_gradients_reach_only_the_student_and_the_connectors(tmp_path):
    """LSH from a 256-d teacher (resnet8x4) into a 64-d student through a Linear
    connector: after backward the teacher has no gradient, the student and the
    connector do, and the LSH projection is not a parameter."""
    teacher = classifier_cfg('resnet8x4', 256)
    ckpt = save_teacher(teacher, str(tmp_path / 'wide.pth'))
    lsh = dict(lsh=dict(
        loss=dict(type='LSHLoss', in_channels=256, num_hashes=512, sigma='head.fc.weight'),
        inputs=dict(student_feat='student.embedding', teacher_feat='teacher.embedding'),
        connectors=dict(student_feat=dict(type='LinearConnector', in_channels=64,
                                          out_channels=256))))
    model = build(ckpt, lsh, teacher=teacher)
    model.train()
    data = model.data_preprocessor(raw_batch(4), True)
    total, _ = model.parse_losses(model.loss(data['inputs'], data['data_samples']))
    total.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    connector = model.distill_losses.lsh.connectors.student_feat[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in connector.parameters())
    assert model.student.backbone.conv1.weight.grad.abs().sum() > 0
    assert not any('projection' in name for name, _ in model.named_parameters())
    # sigma came from the loaded teacher's fc weight
    std = float(model.teacher.head.fc.weight.std())
    w = model.distill_losses.lsh.loss.projection.weight
    assert math.isclose(float(w.std()), std, rel_tol=0.05)


def test_predict_is_the_student_alone_and_needs_no_teacher_weights(teacher_ckpt):
    model = build(None, load=False)  # never loaded: test-time use
    model.eval()
    batch = raw_batch(3, seed=2)
    data = model.data_preprocessor(batch, False)
    ours = model.test_step(batch)
    stock = model.student.predict(data['inputs'], data['data_samples'])
    for a, b in zip(ours, stock):
        torch.testing.assert_close(a.pred_score, b.pred_score)
    torch.testing.assert_close(model(data['inputs'], mode='tensor'),
                               model.student(data['inputs'], mode='tensor'))
    with pytest.raises(RuntimeError, match='teacher weights are not loaded'):
        model.loss(data['inputs'], data['data_samples'])


def test_predicting_with_teacher(teacher_ckpt):
    model = build(teacher_ckpt).eval()
    batch = raw_batch(3, seed=3)
    data = model.data_preprocessor(batch, False)
    with model.predicting_with_teacher(), torch.no_grad():
        ours = model.predict(data['inputs'], data['data_samples'])
        ref = model.teacher.head(model.teacher.extract_feat(normalised(batch)))
    torch.testing.assert_close(torch.stack([o.pred_score for o in ours]), ref.softmax(1))


def test_teacher_with_its_own_normalisation_from_a_config_file(tmp_path):
    """An mmpretrain-style teacher config keeps data_preprocessor at the top level; the
    distiller reads it and re-normalises the student's input for the teacher."""
    t_mean, t_std = [100.0, 100.0, 100.0], [70.0, 70.0, 70.0]
    path = tmp_path / 'teacher_cfg.py'
    path.write_text(f"model = {classifier_cfg('resnet14')!r}\n"
                    f'data_preprocessor = dict(mean={t_mean}, std={t_std}, to_rgb=False)\n')
    ckpt = save_teacher(classifier_cfg('resnet14'), str(tmp_path / 'teacher.pth'))
    model = build(ckpt, teacher=str(path))
    assert not model.teacher_input.identity
    batch = raw_batch(2, seed=4)
    got = model.collect_loss_inputs(batch, 'kd')['kd'][0]['teacher_logits']
    x = torch.stack(batch['inputs']).float()
    x_t = (x - torch.tensor(t_mean).view(1, 3, 1, 1)) / torch.tensor(t_std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model.teacher.head(model.teacher.extract_feat(x_t))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_labels_source_needs_one_label_per_image():
    samples = [DataSample().set_gt_label(3), DataSample().set_gt_label([1, 2])]
    with pytest.raises(ValueError, match='sample 1 has 2 labels'):
        batch_labels(samples)
    mixed = DataSample().set_gt_score(torch.full((10, ), 0.1))  # Mixup-style scores
    with pytest.raises(ValueError, match='sample 0 has no gt_label'):
        batch_labels([mixed])
    labels = batch_labels([DataSample().set_gt_label(k) for k in (7, 0, 2)])
    assert labels.dtype == torch.long and labels.tolist() == [7, 0, 2]


def test_lsh_median_bias_from_the_teacher_embeddings(teacher_ckpt):
    """LSHBiasInitHook on the classification distiller: b = -median_m (W f_t,m) over the
    teacher embeddings of the batches, recomputed here by hand."""
    lsh = dict(lsh=dict(
        loss=dict(type='LSHLoss', in_channels=64, num_hashes=256, sigma='head.fc.weight',
                  correct_only=True),
        inputs=dict(student_feat='student.embedding', teacher_feat='teacher.embedding',
                    teacher_logits='teacher.logits', labels='labels')))
    model = build(teacher_ckpt, lsh)
    batches = [raw_batch(8, seed=s) for s in range(3)]
    LSHBiasInitHook(max_batches=None).fit(model, batches)
    with torch.no_grad():
        feats = torch.cat([model.teacher.extract_feat(normalised(b))[-1] for b in batches])
    weight = model.distill_losses.lsh.loss.projection.weight
    expected = -(feats @ weight.t()).median(dim=0).values
    torch.testing.assert_close(model.distill_losses.lsh.loss.projection.bias, expected,
                               rtol=1e-5, atol=1e-5)
    ones = (feats @ weight.t() + expected > 0).float().mean(0)
    assert float((ones - 0.5).abs().mean()) < 0.05


def test_data_preprocessor_defaults(teacher_ckpt):
    """Without any data_preprocessor the distiller uses a ClsDataPreprocessor (never
    mmengine's BaseDataPreprocessor, which would not stack / normalise the images)."""
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(type='ClassificationDistiller', student=STUDENT,
                              teacher=TEACHER, distill_losses=KD))
    assert type(model.data_preprocessor).__name__ == 'ClsDataPreprocessor'
    student = ConfigDict(STUDENT, data_preprocessor=dict(mean=MEAN, std=STD))
    model = MODELS.build(dict(type='ClassificationDistiller', student=student,
                              teacher=TEACHER, distill_losses=KD))
    np.testing.assert_allclose(model.data_preprocessor.mean.flatten().numpy(), MEAN)
    assert isinstance(model.student.head.fc, nn.Linear)


def test_nonfinite_option_reaches_the_base_distiller(teacher_ckpt):
    assert build(teacher_ckpt, load=False).nonfinite == 'raise'
    assert build(teacher_ckpt, load=False, nonfinite='skip').nonfinite == 'skip'
    with pytest.raises(ValueError, match="nonfinite must be 'raise' or 'skip'"):
        build(teacher_ckpt, load=False, nonfinite='ignore')
