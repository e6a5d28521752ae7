"""A NaN/inf distill loss never reaches the weights: stop with its name, or skip."""
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

from test_detection_distiller import (FPN_L2, RETINA_STUDENT, RETINA_TEACHER, ckpts,  # noqa
                                      model_cfg)


def build(ckpt, nonfinite):
    init_default_scope('mmdet')
    model = MODELS.build(dict(type='DetectionDistiller', student=model_cfg(RETINA_STUDENT),
                              teacher=model_cfg(RETINA_TEACHER), teacher_ckpt=ckpt,
                              distill_losses=FPN_L2, nonfinite=nonfinite))
    model.init_weights()
    return model


def poison(model):
    loss = model.distill_losses['fpn'].loss
    original = loss.forward
    loss.forward = lambda *a, **k: original(*a, **k) * float('nan')


@pytest.mark.parametrize('nonfinite', ['raise', 'skip'])
def test_nonfinite_distill_loss_never_updates_the_weights(ckpts, nonfinite):  # noqa: F811
    model = build(ckpts['retina'], nonfinite)
    model.set_progress(7, 0)
    poison(model)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = demo_mm_inputs(2, [[3, 128, 128]] * 2, num_classes=4)
    if nonfinite == 'raise':
        with pytest.raises(FloatingPointError,
                           match=r'distill.loss_fpn is not finite at iteration 7'):
            model.train_step(data, optim)
    else:
        log_vars = model.train_step(data, optim)
        assert model.skipped_steps == 1
        assert not any(k.startswith('distill.') for k in log_vars)
    for key, value in model.state_dict().items():
        if 'num_batches_tracked' in key or 'running_' in key:
            continue  # BN statistics move in any forward pass
        assert torch.equal(value, before[key]), key
    assert not optim.optimizer.state  # no momentum was accumulated


def test_finite_losses_train(ckpts):  # noqa: F811
    model = build(ckpts['retina'], 'raise')
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    weight = model.student.backbone.conv1.weight.clone()
    log_vars = model.train_step(demo_mm_inputs(2, [[3, 128, 128]] * 2, num_classes=4), optim)
    assert torch.isfinite(log_vars['distill.loss_fpn'])
    assert not torch.equal(weight, model.student.backbone.conv1.weight)


def test_bad_nonfinite_option(ckpts):  # noqa: F811
    with pytest.raises(ValueError, match="nonfinite must be 'raise' or 'skip'"):
        build(ckpts['retina'], 'ignore')
