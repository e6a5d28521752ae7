"""The opt-in low-precision teacher (``teacher_dtype='bf16'``): weights cast once after
every fp32 use of them, the losses see fp32 teacher outputs within bf16 rounding of the
fp32 teacher's, gradients still reach the student through the teacher's head (FCFD), and
the teacher evaluation gets fp32 predictions."""
import copy

import pytest
import torch
from helpers import detection_batch, repo_path, save_random_teachers
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmkd.models.distillers.teacher_precision import TeacherPrecision

RETINA_LSH = 'configs/lsh/lsh_retinanet_r18_r18w16_fpn_synth.py'
FRCNN_FCFD = 'configs/fcfd/fcfd_faster_rcnn_r18_r18w16_fpn_synth.py'


@pytest.fixture(scope='module')
def teachers(tmp_path_factory):
    return save_random_teachers(tmp_path_factory.mktemp('teachers'), seed=3)


def build(config: str, teacher_ckpt: str, teacher_dtype=None):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = copy.deepcopy(Config.fromfile(repo_path(config)).model)
    cfg.teacher_ckpt = teacher_ckpt
    cfg.teacher_dtype = teacher_dtype
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def distill_losses(model, batch, seed=0):
    torch.manual_seed(seed)  # same RoI sampling for both precisions
    losses = model.loss(batch['inputs'], copy.deepcopy(batch['data_samples']))
    return {k: v for k, v in losses.items() if k.startswith('distill.loss_') and
            k.count('.') == 1}


def test_bf16_retinanet_teacher_features_and_loss_within_rounding(teachers):
    exact = build(RETINA_LSH, teachers['retina'])
    low = build(RETINA_LSH, teachers['retina'], 'bf16')
    low.load_state_dict(exact.state_dict())  # same student and LSH projection
    # the weights were cast once, after LSH read sigma from the fp32 classifier weight
    assert all(p.dtype == torch.bfloat16 for p in low.teacher.parameters())
    assert all(p.dtype == torch.float32 for p in low.student.parameters())
    torch.testing.assert_close(low.distill_losses['lsh'].loss.projection.weight,
                               exact.distill_losses['lsh'].loss.projection.weight)

    batch = detection_batch(exact)
    captured = {}
    for name, model in (('fp32', exact), ('bf16', low)):
        model.train()
        out = distill_losses(model, batch)
        captured[name] = out['distill.loss_lsh']
        with torch.no_grad(), model.teacher_recorder.recording():
            from mmkd.models.distillers.base_distiller import DistillStep
            step = DistillStep(batch['inputs'], batch['data_samples'])
            model._run_teacher(step)
            captured[name + '_feat'] = model._fetch(step, 'teacher.bbox_head.cls_convs.1')
    feats32, feats16 = captured['fp32_feat'], captured['bf16_feat']
    assert all(f.dtype == torch.float32 for f in feats16)  # handed back in fp32
    for a, b in zip(feats32, feats16):
        rel = (a - b).norm() / a.norm()
        assert 0 < rel < 2e-2  # bf16 rounding: not identical, but close
    loss32, loss16 = captured['fp32'], captured['bf16']
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert abs(float(loss16.detach()) - float(loss32.detach())) < 0.05 * float(loss32.detach())
    loss16.backward()
    assert all(p.grad is None for p in low.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in low.student.parameters())


def test_bf16_faster_rcnn_teacher_runs_roi_passes_with_grad_through_its_head(teachers):
    """FCFD runs the teacher's RoI head on bridged student features with gradients, and
    the teacher's RoIAlign on the student's RoIs: both work with a bf16 teacher, and the
    gradient reaches the student→teacher bridge."""
    exact = build(FRCNN_FCFD, teachers['frcnn'])
    low = build(FRCNN_FCFD, teachers['frcnn'], 'bf16')
    low.load_state_dict(exact.state_dict())
    batch = detection_batch(exact)
    out32 = distill_losses(exact.train(), batch, seed=5)
    out16 = distill_losses(low.train(), batch, seed=5)
    assert out32.keys() == out16.keys() and out16
    for key in out32:
        assert out16[key].dtype == torch.float32
        assert abs(float(out16[key]) - float(out32[key])) <= 0.05 * abs(float(out32[key])) + 1e-4
    sum(out16.values()).backward()
    bridges = [p for n, p in low.named_parameters() if 's2t' in n]
    assert bridges and any(p.grad is not None and p.grad.abs().sum() > 0 for p in bridges)
    assert all(p.grad is None for p in low.teacher.parameters())


def test_teacher_predictions_come_back_in_fp32(teachers):
    low = build(RETINA_LSH, teachers['retina'], 'bf16')
    low.eval()
    batch = detection_batch(low)
    with torch.no_grad(), low.predicting_with_teacher():
        results = low.predict(batch['inputs'], copy.deepcopy(batch['data_samples']))
    assert len(results) == 2
    for sample in results:
        assert sample.pred_instances.bboxes.dtype == torch.float32
        assert sample.pred_instances.scores.dtype == torch.float32


def test_apply_is_once_and_bad_values_name_the_choices():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    precision = TeacherPrecision('bf16')
    precision.apply(model)
    precision.apply(model)  # idempotent: one input-cast hook per module
    assert len(model[0]._forward_pre_hooks) == 1
    model.eval()
    out = model(torch.randn(1, 3, 8, 8))  # an fp32 input is cast on the way in
    assert out.dtype == torch.bfloat16 and precision.to_fp32(out).dtype == torch.float32
    assert TeacherPrecision(None).to_fp32(out) is out
    with pytest.raises(ValueError, match="teacher_dtype must be one of.*'bf16'"):
        TeacherPrecision('int8')


def test_bf16_classification_teacher_kd_within_rounding(tmp_path):
    """The classification distiller takes the same option: KD against a bf16 teacher's
    logits is within bf16 rounding of the fp32 teacher's."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')

    def classifier(arch, width):
        return dict(type='ImageClassifier', backbone=dict(type='CIFARResNet', arch=arch),
                    neck=dict(type='GlobalAveragePooling'),
                    head=dict(type='LinearClsHead', num_classes=10, in_channels=width))

    torch.manual_seed(0)
    teacher = MODELS.build(classifier('resnet14', 64))
    teacher.init_weights()
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    kd = dict(kd=dict(loss=dict(type='KDLoss', temperature=4.0),
                      inputs=dict(student_logits='student.logits',
                                  teacher_logits='teacher.logits')))
    preprocessor = dict(type='ClsDataPreprocessor', mean=[120.0] * 3, std=[50.0] * 3,
                        num_classes=10)
    losses = {}
    for dtype in (None, 'bf16'):
        torch.manual_seed(1)
        model = MODELS.build(dict(type='ClassificationDistiller',
                                  student=classifier('resnet8', 64),
                                  teacher=classifier('resnet14', 64), teacher_ckpt=ckpt,
                                  data_preprocessor=preprocessor, distill_losses=kd,
                                  teacher_dtype=dtype))
        model.init_weights()
        model.train()
        gen = torch.Generator().manual_seed(2)
        batch = dict(inputs=[torch.randint(0, 256, (3, 32, 32), generator=gen,
                                           dtype=torch.uint8) for _ in range(4)],
                     data_samples=[DataSample().set_gt_label(k) for k in (1, 2, 3, 4)])
        data = model.data_preprocessor(batch, True)
        losses[dtype] = model.loss(data['inputs'], data['data_samples'])['distill.loss_kd']
        assert next(model.teacher.parameters()).dtype == (torch.bfloat16 if dtype else
                                                           torch.float32)
    exact, low = float(losses[None].detach()), float(losses['bf16'].detach())
    assert losses['bf16'].dtype == torch.float32 and low != exact
    assert abs(low - exact) < 0.05 * exact + 1e-4
