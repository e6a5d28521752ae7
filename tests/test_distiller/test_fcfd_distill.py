"""FCFD wired into the detection distiller (the CPU configs): where each term's gradient
goes, DDP safety of the bridges, logging of the terms, export, the "inherit" option
(fresh start vs resume) and one training step of each config."""
import copy
import math

import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from helpers import (CPU_TEACHERS, detection_batch, load_config, repo_path,
                     save_random_checkpoint, save_random_teachers)
from mmkd.models.distillers import BaseDistiller, LossBinding
from mmkd.models.losses import FCFDDenseLoss, FCFDRoILoss
from mmkd.registry import MODELS as MMKD_MODELS
from mmkd.utils.export import student_checkpoint

CONFIGS = dict(
    frcnn='configs/fcfd/fcfd_faster_rcnn_r18_r18w16_fpn_synth.py',
    retina='configs/fcfd/fcfd_retinanet_r18_r18w16_fpn_synth.py')
STUDENTS = dict(
    frcnn='configs/synthetic/faster_rcnn_r18w16_fpn_student_synth.py',
    retina='configs/synthetic/retinanet_r18w16_fpn_student_synth.py')
TERMS = ('app', 'kl_s', 'reg_s', 'kl_st', 'reg_st', 'kl_ts', 'reg_ts')
INHERIT = ['neck', 'rpn_head', 'roi_head']


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp('fcfd_ckpts')
    out = save_random_teachers(root, seed=5)
    out['frcnn_other'] = save_random_checkpoint(
        Config.fromfile(repo_path(CPU_TEACHERS['frcnn'])).model, str(root / 'other.pth'), seed=7)
    return out


def build(det: str, ckpt: str, **options):
    model_cfg = copy.deepcopy(Config.fromfile(repo_path(CONFIGS[det])).model)
    model_cfg.teacher_ckpt = ckpt
    model_cfg.update(options)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def grads(module: nn.Module):
    return [p.grad for p in module.parameters()]


def some_grad(gs) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in gs)


def untouched(gs) -> bool:
    """No gradient, or only zeros (FCFD's two cross passes share one RoI extraction, so
    back-propagating one pass's terms alone also reaches the other's inputs, with 0)."""
    return all(g is None or not g.abs().sum() for g in gs)


def no_grad(gs) -> bool:
    return all(g is None for g in gs)


def reached(bridges: nn.ModuleList) -> bool:
    """Every bridge has a gradient, and the first (finest) level a nonzero one (on the
    128 px CPU data no RoI maps to P5: that bridge gets mmdet's zero fallback gradient)."""
    return all(g is not None for g in grads(bridges)) and some_grad(grads(bridges[0]))


def loss_step(model):
    """One distillation forward; returns (losses, the FCFD loss's forward kwargs)."""
    captured = []
    handle = model.distill_losses['fcfd'].loss.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(dict(kwargs)), with_kwargs=True)
    model.train()
    try:
        losses = model(**detection_batch(model), mode='loss')
    finally:
        handle.remove()
    assert len(captured) == 1
    return losses, captured[0]


@pytest.mark.parametrize('det', ['frcnn', 'retina'])
def test_gradient_routing_of_the_cross_terms(det, ckpts):
    """st (student features through the frozen teacher head) trains the student backbone,
    neck and B_s->t, never a teacher parameter, and not the student head; ts (teacher
    features through the student head) trains the student head and B_t->s only."""
    model = build(det, ckpts[det])
    loss = model.distill_losses['fcfd'].loss
    assert type(loss) is (FCFDRoILoss if det == 'frcnn' else FCFDDenseLoss)
    head = model.student.roi_head.bbox_head if det == 'frcnn' else model.student.bbox_head
    teacher_state = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    _, inputs = loss_step(model)
    # Faster R-CNN: B_s->t on its 5 FPN levels P2-P6, B_t->s on the 4 RoI levels P2-P5;
    # the CPU RetinaNet: both on its 4 FPN levels P2-P5
    num_levels, roi_levels = (5, 4) if det == 'frcnn' else (4, 4)
    assert len(loss.t2s) == roi_levels and len(loss.s2t) == num_levels

    parts = loss(**inputs)  # the same call again, to back-propagate single terms
    (parts['kl_st'] + parts['reg_st']).backward(retain_graph=True)
    assert some_grad([model.student.backbone.conv1.weight.grad])
    assert some_grad(grads(model.student.neck))
    assert reached(loss.s2t[:roi_levels])
    assert untouched(grads(loss.t2s)) and untouched(grads(head))
    assert no_grad(grads(model.teacher)) and not any(
        p.requires_grad for p in model.teacher.parameters())

    model.zero_grad(set_to_none=True)
    (parts['kl_ts'] + parts['reg_ts']).backward()
    assert some_grad(grads(head)) and reached(loss.t2s)
    assert untouched(grads(loss.s2t)) and untouched(grads(model.student.backbone))
    assert untouched(grads(model.student.neck)) and no_grad(grads(model.teacher))
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher_state[key]), key


@pytest.mark.parametrize('det', ['frcnn', 'retina'])
def test_every_loss_parameter_gets_a_gradient_and_terms_are_logged(det, ckpts):
    """DDP without find_unused_parameters needs a gradient for every bridge parameter
    every step; the terms are logged next to the total and never summed twice."""
    model = build(det, ckpts[det])
    losses, _ = loss_step(model)
    total = losses['distill.loss_fcfd']
    parts = {t: losses[f'distill.loss_fcfd.{t}'] for t in TERMS}
    assert torch.isfinite(total) and total > 0
    torch.testing.assert_close(sum(parts.values()), total.detach())
    assert not any(p.requires_grad for p in parts.values())

    loss, log_vars = model.parse_losses(losses)
    plain = {k: v for k, v in losses.items() if not k.startswith('distill.loss_fcfd.')}
    expected, _ = BaseModel.parse_losses(model, plain)
    torch.testing.assert_close(loss, expected)  # the terms are not added again
    assert all(f'distill.loss_fcfd.{t}' in log_vars for t in TERMS)

    loss.backward()
    missing = [n for n, p in model.distill_losses.named_parameters() if p.grad is None]
    assert not missing, f'no gradient for {missing}'
    assert no_grad(grads(model.teacher))


def test_export_drops_the_bridges(ckpts):
    model = build('frcnn', ckpts['frcnn'])
    state = model.state_dict()
    bridges = [k for k in state if k.startswith('distill_losses.fcfd.loss.')]
    assert any('.s2t.4.' in k for k in bridges) and any('.t2s.3.' in k for k in bridges)
    assert not any('.t2s.4.' in k for k in bridges)
    exported = student_checkpoint(dict(state_dict=state, meta={}))
    assert not any(k.startswith(('distill_losses.', 'student.', 'teacher.'))
                   for k in exported['state_dict'])
    assert 'distill_losses.fcfd' in exported['meta']['mmkd_export']['dropped']
    init_default_scope('mmdet')
    plain = MODELS.build(Config.fromfile(repo_path(STUDENTS['frcnn'])).model)
    plain.load_state_dict(exported['state_dict'], strict=True)


# ---------------------------------------------------------------- inherit
def test_inherit_copies_every_matching_tensor(ckpts):
    model = build('frcnn', ckpts['frcnn'], inherit=INHERIT)
    teacher = model.teacher
    for path in ('rpn_head', 'roi_head', 'neck.fpn_convs'):
        s_state = model.student.get_submodule(path).state_dict()
        t_state = teacher.get_submodule(path).state_dict()
        assert s_state.keys() == t_state.keys()
        for key, value in s_state.items():
            assert torch.equal(value, t_state[key]), f'{path}.{key}'
    # the lateral convs read the narrower student backbone: shapes differ, kept as they are
    lateral = model.student.neck.lateral_convs[0].conv.weight
    assert lateral.shape != teacher.neck.lateral_convs[0].conv.weight.shape
    report = model.inherit_from_teacher()
    assert sorted(report) == sorted(INHERIT)
    assert len(report['neck']['mismatched']) == 4  # the 4 lateral conv weights
    assert all(k.startswith('lateral_convs.') for k in report['neck']['mismatched'])
    assert not report['rpn_head']['mismatched'] and not report['roi_head']['missing']
    # copies, not shared tensors: the student trains its own
    assert model.student.rpn_head.rpn_conv.weight.data_ptr() != \
        teacher.rpn_head.rpn_conv.weight.data_ptr()
    # without inherit the student keeps its own initialisation
    fresh = build('frcnn', ckpts['frcnn'])
    assert not torch.equal(fresh.student.rpn_head.rpn_conv.weight,
                           teacher.rpn_head.rpn_conv.weight)


@pytest.mark.parametrize('inherit, error, match', [
    (['nek'], KeyError, r"student has no module 'nek'.*'neck'"),
    (['bbox_head'], KeyError, "student has no module 'bbox_head'"),
    ('neck', ValueError, 'inherit must be a list of module paths'),
])
def test_inherit_names_must_exist(ckpts, inherit, error, match):
    with pytest.raises(error, match=match):
        build('frcnn', ckpts['frcnn'], inherit=inherit)


def runner_cfg(tiny_det_data, work_dir, teacher_ckpt, det='frcnn', **options):
    cfg = load_config(CONFIGS[det], tiny_det_data, work_dir, max_iters=1,
                      **{'model.teacher_ckpt': teacher_ckpt}, **options)
    cfg.custom_hooks = [dict(type='DistillScheduleHook'), dict(type='StudentExportHook')]
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.mark.parametrize('det', ['frcnn', 'retina'])
def test_one_training_step_of_the_cpu_config(det, ckpts, tiny_det_data, tmp_path):
    cfg = runner_cfg(tiny_det_data, str(tmp_path), ckpts[det], det)
    runner = Runner.from_cfg(cfg)
    bridges_before = copy.deepcopy(runner.model.distill_losses.state_dict())
    runner.train()
    hub = runner.message_hub
    total = float(hub.get_scalar('train/distill.loss_fcfd').current())
    terms = [float(hub.get_scalar(f'train/distill.loss_fcfd.{t}').current()) for t in TERMS]
    assert math.isfinite(total) and total > 0
    assert math.isfinite(float(hub.get_scalar('train/loss').current()))
    assert sum(terms) == pytest.approx(total, rel=1e-4)
    model = runner.model
    expected = torch.load(ckpts[det], weights_only=True)['state_dict']
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, expected[key]), key
    after = model.distill_losses.state_dict()
    assert not torch.equal(after['fcfd.loss.s2t.0.conv.weight'],
                           bridges_before['fcfd.loss.s2t.0.conv.weight'])
    assert not torch.equal(after['fcfd.loss.t2s.0.conv.weight'],
                           bridges_before['fcfd.loss.t2s.0.conv.weight'])
    exported = torch.load(tmp_path / 'iter_1_student.pth', weights_only=True)
    assert not any(k.startswith('distill_losses.') for k in exported['state_dict'])


def test_inherit_is_overwritten_on_resume(ckpts, tiny_det_data, tmp_path, monkeypatch):
    """init_weights (and so inherit) runs before the runner's resume, which then loads
    the checkpoint over it: a resumed run continues from its checkpoint."""
    calls = []
    original = BaseDistiller.inherit_from_teacher

    def spy(self):
        report = original(self)
        calls.append(self.student.rpn_head.rpn_conv.weight.detach().clone())
        return report

    monkeypatch.setattr(BaseDistiller, 'inherit_from_teacher', spy)
    cfg = runner_cfg(tiny_det_data, str(tmp_path / 'run'), ckpts['frcnn'],
                     **{'model.inherit': INHERIT})
    Runner.from_cfg(cfg).train()
    saved = torch.load(tmp_path / 'run' / 'iter_1.pth', weights_only=False)['state_dict']

    # resumed (at its max_iters, so nothing trains) with another teacher checkpoint,
    # which inherit copies first
    cfg = runner_cfg(tiny_det_data, str(tmp_path / 'run'), ckpts['frcnn_other'],
                     **{'model.inherit': INHERIT})
    cfg.resume, cfg.load_from = True, str(tmp_path / 'run' / 'iter_1.pth')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert len(calls) == 2
    other_teacher = torch.load(ckpts['frcnn_other'], weights_only=True)['state_dict']
    assert torch.equal(calls[1], other_teacher['rpn_head.rpn_conv.weight'])
    student = runner.model.student.state_dict()
    for key, value in student.items():
        assert torch.equal(value, saved['student.' + key]), key
    assert not torch.equal(student['rpn_head.rpn_conv.weight'],
                           other_teacher['rpn_head.rpn_conv.weight'])


# ---------------------------------------------------------------- LossBinding terms
@MMKD_MODELS.register_module(force=True)
class _TermsLoss(nn.Module):
    """Returns named terms: a = Σ x, b = 2 · Σ x²."""

    def forward(self, x):
        return dict(a=x.sum(), b=2 * x.pow(2).sum())


@MMKD_MODELS.register_module(force=True)
class _BadTermsLoss(nn.Module):

    def forward(self, x):
        return {'a.b': x.sum()}


def test_loss_binding_sums_named_terms_over_levels_and_factor():
    xs = (torch.tensor([1., 2.], requires_grad=True), torch.tensor([3.], requires_grad=True))
    fetch = {'student.x': xs}.__getitem__
    binding = LossBinding('t', loss=dict(type='_TermsLoss'), inputs=dict(x='student.x'),
                          levels=(0, 1), level_weights=(1.0, 0.5))
    total, parts = binding(fetch, 0.5, return_parts=True)
    a = 0.5 * (3 + 0.5 * 3)
    b = 0.5 * (2 * 5 + 0.5 * 2 * 9)
    assert parts['a'].item() == pytest.approx(a) and parts['b'].item() == pytest.approx(b)
    assert total.item() == pytest.approx(a + b)
    assert not parts['a'].requires_grad and total.requires_grad
    plain = binding(fetch, 0.5)  # backward compatible: a tensor
    assert isinstance(plain, torch.Tensor) and plain.item() == pytest.approx(a + b)
    zero, none = binding(fetch, 0.0, return_parts=True)
    assert zero.item() == 0 and none == {}
    tensor_loss = LossBinding('m', loss=dict(type='FeatureMSELoss'),
                              inputs=dict(student_feat='student.x', teacher_feat='student.x'))
    _, no_parts = tensor_loss(lambda s: xs[0], return_parts=True)
    assert no_parts == {}
    bad = LossBinding('bad', loss=dict(type='_BadTermsLoss'), inputs=dict(x='student.x'))
    with pytest.raises(TypeError, match='names without "."'):
        bad(lambda s: xs[0])
