"""The detection distiller: teacher handling, feature capture, RoI alignment, wiring."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from helpers import (detection_batch, load_config, repo_path, save_random_checkpoint,
                     save_random_teachers)
from mmkd.models.distillers import DetectionDistiller

RETINA_TEACHER = 'configs/synthetic/retinanet_r18_fpn_teacher_synth.py'
RETINA_STUDENT = 'configs/synthetic/retinanet_r18w16_fpn_student_synth.py'
FRCNN_TEACHER = 'configs/synthetic/faster_rcnn_r18_fpn_teacher_synth.py'
FRCNN_STUDENT = 'configs/synthetic/faster_rcnn_r18w16_fpn_student_synth.py'


def model_cfg(path: str) -> ConfigDict:
    return Config.fromfile(repo_path(path)).model


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    return save_random_teachers(tmp_path_factory.mktemp('ckpts'))


def build(student: str, teacher: str, ckpt: str, distill_losses: dict) -> DetectionDistiller:
    init_default_scope('mmdet')
    model = MODELS.build(
        dict(type='DetectionDistiller', student=model_cfg(student), teacher=model_cfg(teacher),
             teacher_ckpt=ckpt, distill_losses=distill_losses))
    model.init_weights()
    return model


FPN_L2 = dict(fpn=dict(
    loss=dict(type='FeatureMSELoss'),
    inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck'),
    levels=(0, 1, 2, 3),
    connectors=dict(student_feat=dict(type='ConvConnector', in_channels=64,
                                      out_channels=64))))


def test_teacher_outside_module_tree(ckpts):
    model = build(RETINA_STUDENT, RETINA_TEACHER, ckpts['retina'], FPN_L2)
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in model.teacher.parameters())
    assert not any(k.startswith('teacher.') for k in model.state_dict())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert model.student.training and not model.teacher.training
    assert not any(m.training for m in model.teacher.modules())


def test_distill_gradients_reach_student_and_connectors_only(ckpts):
    model = build(RETINA_STUDENT, RETINA_TEACHER, ckpts['retina'], FPN_L2)
    model.train()
    losses = model(**detection_batch(model), mode='loss')
    losses['distill.loss_fpn'].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    connector = model.distill_losses['fpn'].connectors['student_feat']
    assert all(c.conv.weight.grad.abs().sum() > 0 for c in connector)
    assert model.student.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.student.neck.fpn_convs[0].conv.weight.grad.abs().sum() > 0
    # the FPN loss must not touch the dense head
    assert all(p.grad is None for p in model.student.bbox_head.parameters())


def test_teacher_runs_only_what_losses_need(ckpts):
    model = build(FRCNN_STUDENT, FRCNN_TEACHER, ckpts['frcnn'], dict(kd=dict(
        loss=dict(type='KDLoss'),
        inputs=dict(student_logits='student.roi.cls_score',
                    teacher_logits='teacher.roi.cls_score'))))

    def forbidden(*args, **kwargs):
        raise AssertionError('the teacher ran its RPN or a loss path')

    model.teacher.rpn_head.register_forward_hook(forbidden)
    model.teacher.roi_head.loss = forbidden
    model.teacher.rpn_head.loss_and_predict = forbidden
    losses = model(**detection_batch(model), mode='loss')
    assert torch.isfinite(losses['distill.loss_kd'])
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox'} <= set(losses)


def test_roi_features_of_both_sides_on_the_same_rois(ckpts, tmp_path):
    """With the teacher = a copy of the student, RoI outputs computed on the student's
    sampled RoIs must be identical on both sides (eval-mode BN on both)."""
    init_default_scope('mmdet')
    student_cfg = model_cfg(FRCNN_TEACHER)
    ckpt = save_random_checkpoint(student_cfg, str(tmp_path / 'same.pth'), seed=3)
    model = build(FRCNN_TEACHER, FRCNN_TEACHER, ckpt, dict(nd_inputs=dict(
        loss=dict(type='FeatureMSELoss'),
        inputs=dict(student_feat='student.roi.embedding',
                    teacher_feat='teacher.roi.embedding'))))
    model.student.load_state_dict(torch.load(ckpt)['state_dict'])
    model.eval()
    captured = {}
    original = model._fetch

    def spy(step, source):
        value = original(step, source)
        captured[source] = value
        captured['step'] = step
        return value

    model._fetch = spy
    losses = model.loss(**detection_batch(model))
    step = captured['step']
    s, t = step.student_roi, step.teacher_roi
    assert s.rois.shape[0] > 0 and s.rois is t.rois
    assert s.labels.shape == (s.rois.shape[0], )
    assert s.labels.max() <= 4 and (s.labels == 4).any()  # background = num_classes
    torch.testing.assert_close(s.embedding, t.embedding)
    torch.testing.assert_close(s.cls_score, t.cls_score)
    torch.testing.assert_close(s.bbox_pred, t.bbox_pred)
    assert s.embedding.shape == (s.rois.shape[0], 256)
    assert losses['distill.loss_nd_inputs'].abs() < 1e-10


def test_bad_module_path_suggests_names(ckpts):
    losses = copy.deepcopy(FPN_L2)
    losses['fpn']['inputs']['student_feat'] = 'student.nek'
    with pytest.raises(KeyError, match=r"student has no module 'nek'.*'neck'"):
        build(RETINA_STUDENT, RETINA_TEACHER, ckpts['retina'], losses)


@pytest.mark.parametrize('inputs, message', [
    (dict(student_feat='student.neck'), r"\['teacher_feat'\].*not wired"),
    (dict(student_feat='student.neck', teacher_feat='teacher.neck', student_fet='x'),
     r"\['student_fet'\] are not arguments of FeatureMSELoss.forward"),
    (dict(student_feat='pupil.neck', teacher_feat='teacher.neck'), 'unknown source'),
])
def test_wiring_is_checked_at_build(ckpts, inputs, message):
    with pytest.raises(ValueError, match=message):
        build(RETINA_STUDENT, RETINA_TEACHER, ckpts['retina'],
              dict(bad=dict(loss=dict(type='FeatureMSELoss'), inputs=inputs)))


def test_roi_sources_need_a_two_stage_detector(ckpts):
    with pytest.raises(TypeError, match='two-stage'):
        build(RETINA_STUDENT, RETINA_TEACHER, ckpts['retina'], dict(kd=dict(
            loss=dict(type='KDLoss'),
            inputs=dict(student_logits='student.roi.cls_score',
                        teacher_logits='teacher.roi.cls_score'))))


def test_class_count_mismatch_is_refused(ckpts):
    teacher = model_cfg(RETINA_TEACHER)
    teacher.bbox_head.num_classes = 7
    init_default_scope('mmdet')
    with pytest.raises(ValueError, match='student predicts 4 classes but the teacher 7'):
        MODELS.build(dict(type='DetectionDistiller', student=model_cfg(RETINA_STUDENT),
                          teacher=teacher, teacher_ckpt=None, distill_losses=FPN_L2))


def test_teacher_checkpoint_is_loaded_strictly(ckpts, tmp_path):
    state = torch.load(ckpts['retina'])['state_dict']
    del state['backbone.conv1.weight']
    broken = str(tmp_path / 'broken.pth')
    torch.save(dict(state_dict=state), broken)
    with pytest.raises(ValueError, match=r'1 missing keys: backbone.conv1.weight'):
        build(RETINA_STUDENT, RETINA_TEACHER, broken, FPN_L2)
    with pytest.raises(FileNotFoundError, match='teacher checkpoint .* not found'):
        build(RETINA_STUDENT, RETINA_TEACHER, str(tmp_path / 'nope.pth'), FPN_L2)
    # the Faster R-CNN teacher's checkpoint is not a RetinaNet's
    with pytest.raises(ValueError, match='does not match the teacher config'):
        build(RETINA_STUDENT, RETINA_TEACHER, ckpts['frcnn'], FPN_L2)


def test_loss_refuses_an_unloaded_teacher(ckpts):
    init_default_scope('mmdet')
    model = MODELS.build(dict(type='DetectionDistiller', student=model_cfg(RETINA_STUDENT),
                              teacher=model_cfg(RETINA_TEACHER), teacher_ckpt=None,
                              distill_losses=FPN_L2))
    with pytest.raises(RuntimeError, match='teacher weights are not loaded'):
        model(**detection_batch(model), mode='loss')
    with pytest.raises(ValueError, match='teacher_ckpt is not set'):
        model.init_weights()


def test_predict_is_the_student_alone(ckpts):
    model = build(RETINA_STUDENT, RETINA_TEACHER, ckpts['retina'], FPN_L2)
    model.eval()
    for detector in (model.student, model.teacher):
        detector.bbox_head.test_cfg.score_thr = 0.0  # random weights: keep every box
    data = model.data_preprocessor(
        demo_mm_inputs(1, [[3, 128, 128]], num_classes=4), False)
    inputs, samples = data['inputs'], data['data_samples']
    with torch.no_grad():
        ours = model(inputs, copy.deepcopy(samples), mode='predict')[0].pred_instances
        student = model.student.predict(inputs, copy.deepcopy(samples))[0].pred_instances
        with model.predicting_with_teacher():
            teacher = model(inputs, copy.deepcopy(samples), mode='predict')[0].pred_instances
        tensors = model(inputs, mode='tensor')
        student_tensors = model.student._forward(inputs)
    assert len(ours) > 0
    torch.testing.assert_close(ours.bboxes, student.bboxes)
    torch.testing.assert_close(ours.scores, student.scores)
    assert teacher.scores.shape != ours.scores.shape or \
        not torch.allclose(teacher.scores, ours.scores)
    torch.testing.assert_close(tensors, student_tensors)


def test_plain_student_checkpoint_initialises_the_student(ckpts, tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint
    model = build(RETINA_STUDENT, RETINA_TEACHER, ckpts['retina'], FPN_L2)
    plain = str(tmp_path / 'student_alone.pth')
    save_random_checkpoint(model_cfg(RETINA_STUDENT), plain, seed=11)
    load_checkpoint(model, plain, map_location='cpu', strict=False)
    expected = torch.load(plain)['state_dict']
    for key, value in model.student.state_dict().items():
        torch.testing.assert_close(value, expected[key])


def test_teacher_renormalisation_when_preprocessors_differ(ckpts):
    teacher = model_cfg(RETINA_TEACHER)
    teacher.data_preprocessor.update(mean=[0., 0., 0.], std=[255., 255., 255.],
                                     bgr_to_rgb=False)
    init_default_scope('mmdet')
    model = MODELS.build(dict(type='DetectionDistiller', student=model_cfg(RETINA_STUDENT),
                              teacher=teacher, teacher_ckpt=ckpts['retina'],
                              distill_losses=FPN_L2))
    raw = torch.rand(1, 3, 8, 8) * 255
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    student_input = (raw.flip(1) - mean) / std  # student: BGR -> RGB, then normalise
    torch.testing.assert_close(model.teacher_input(student_input), raw / 255.)


def test_teacher_stays_frozen_through_a_training_run(ckpts, tiny_det_data, tmp_path):
    cfg = load_config('configs/baselines/fitnet_retinanet_r18_r18w16_fpn_synth.py',
                      tiny_det_data, str(tmp_path), max_iters=3,
                      **{'model.teacher_ckpt': ckpts['retina']})
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model
    expected = torch.load(ckpts['retina'])['state_dict']
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert not model.teacher.training
    loss = runner.message_hub.get_scalar('train/distill.loss_fpn_l2').current()
    assert loss > 0 and loss == loss


def test_dense_keep_mask_drops_locations_whose_anchors_are_all_ignored(ckpts):
    from mmdet.structures.bbox import bbox_overlaps
    model = build(RETINA_STUDENT, RETINA_TEACHER, ckpts['retina'], dict(keep=dict(
        loss=dict(type='FeatureMSELoss'),
        inputs=dict(student_feat='student.neck', teacher_feat='teacher.neck'),
        levels=(0, ))))
    data = detection_batch(model)
    samples = data['data_samples']
    samples[1].gt_instances = samples[1].gt_instances[:0]  # an image without objects
    model.loss(**data)
    from mmkd.models.distillers.anchor_masks import anchor_keep_mask
    head = model.student.bbox_head
    sizes = [(32, 32), (16, 16), (8, 8), (4, 4)]  # P2-P5 of the 128x128 batch
    # the default (LSHFM) rule skips an image without gt; test_anchor_masks.py checks
    # the rest of it against the authors' code
    assert not any(m[1].any() for m in anchor_keep_mask(head, sizes, samples))
    masks = anchor_keep_mask(head, sizes, samples, rule='band')
    assert [tuple(m.shape) for m in masks] == [(2, h * w) for h, w in sizes]
    assert all(m[1].all() for m in masks)  # no gt: nothing is in the ignore band
    # an independent count on level 0 of image 0: 9 anchors per location
    anchors = head.prior_generator.grid_priors(sizes, device='cpu')[0]
    iou = bbox_overlaps(anchors, samples[0].gt_instances.bboxes).max(1).values
    all_ignored = ((iou >= 0.4) & (iou < 0.5)).view(-1, 9).all(1)
    assert torch.equal(masks[0][0], ~all_ignored)
