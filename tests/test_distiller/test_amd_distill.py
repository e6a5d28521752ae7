"""AMD on FPN levels through the detection distiller (issue 7, detection part).

* the batch padding mask is aligned with every FPN level: an image gets the same AMD value
  alone and inside a padded batch;
* only the selected levels contribute, with their ``level_weights``;
* the loss stays finite and reaches the student's neck under bf16 autocast;
* one training step of every CPU AMD config is finite.
"""
import copy
import math
from contextlib import contextmanager

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from helpers import load_config, repo_path, save_random_teachers
from mmkd.models.distillers.detection_distiller import batch_valid_mask
from mmkd.models.distillers.loss_binding import LossBinding
from mmkd.models.losses.amd_loss import AMDLoss

RETINA_TEACHER = 'configs/synthetic/retinanet_r18_fpn_teacher_synth.py'
RETINA_STUDENT = 'configs/synthetic/retinanet_r18w16_fpn_student_synth.py'
RETINA_STRIDES = (4, 8, 16, 32)  # P2-P5 of the CPU RetinaNet

CPU_CONFIGS = [
    'configs/amd/amd_retinanet_r18_r18w16_fpn_synth.py',
    'configs/amd/amd_faster_rcnn_r18_r18w16_fpn_synth.py',
    'configs/amd/amd+l2_retinanet_r18_r18w16_fpn_synth.py',
    'configs/amd/amd+l2_faster_rcnn_r18_r18w16_fpn_synth.py',
]


def model_cfg(path: str):
    return Config.fromfile(repo_path(path)).model


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    return save_random_teachers(tmp_path_factory.mktemp('amd_ckpts'))


def amd_binding(levels=(0, 1, 2), level_weights=(3.0, 2.0, 1.0), local_weight=0.0,
                with_mask=True, loss_weight=1.0) -> dict:
    inputs = dict(student_feat='student.neck', teacher_feat='teacher.neck')
    if with_mask:
        inputs['valid_mask'] = 'valid_mask'
    return dict(fpn_amd=dict(
        loss=dict(type='AMDLoss', local_weight=local_weight, loss_weight=loss_weight),
        inputs=inputs, levels=levels, level_weights=level_weights))


def build_retina(ckpt: str, distill_losses: dict):
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='DetectionDistiller', student=model_cfg(RETINA_STUDENT),
        teacher=model_cfg(RETINA_TEACHER), teacher_ckpt=ckpt,
        distill_losses=distill_losses))
    model.init_weights()
    return model


def packed_images(shapes):
    """``demo_mm_inputs`` images (h, w) with a few bright / dark blocks, so that the
    attention maps have objects to separate from the background."""
    packed = demo_mm_inputs(len(shapes), [[3, h, w] for h, w in shapes], num_classes=4,
                            num_items=[2] * len(shapes))
    for img, (h, w) in zip(packed['inputs'], shapes):
        img[:, h // 8:h // 3, w // 6:w // 2] = 255
        img[:, h // 2:h - h // 6, w // 2:w - w // 8] = 0
    return packed


def subset(packed, indices):
    return dict(inputs=[packed['inputs'][i].clone() for i in indices],
                data_samples=[copy.deepcopy(packed['data_samples'][i]) for i in indices])


@contextmanager
def necks_of_the_step(model):
    """The student's and the teacher's FPN outputs of the step run inside (the distiller
    releases its own records at the end of each step)."""
    kept = {}
    handles = [getattr(model, side).neck.register_forward_hook(
        lambda module, args, out, side=side: kept.setdefault(side, out))
        for side in ('student', 'teacher')]
    try:
        yield kept
    finally:
        for handle in handles:
            handle.remove()


def distill_values(model, packed):
    """The distill losses, the recorded student / teacher FPN features, the batch."""
    data = model.data_preprocessor(copy.deepcopy(packed), True)
    with torch.no_grad(), necks_of_the_step(model) as necks:
        losses = model.loss(**data)
    values = {k[len('distill.loss_'):]: v for k, v in losses.items()
              if k.startswith('distill.')}
    return values, necks['student'], necks['teacher'], data


# ------------------------------------------------------------------------------------
# Padding: an image alone == the same image inside a padded batch
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize('local_weight', [0.0, 0.2])
def test_padding_invariance_through_the_distiller(ckpts, local_weight):
    """Image A (72x100) alone is padded to 96x128 (pad_size_divisor=32, bottom / right);
    next to a 128x128 image B it is padded to 128x128. Its valid region spans partial
    cells on every level (72/8 = 9, 100/8 = 12.5, ...). The distiller's batch value must
    be the mean of the two images' values alone.

    Random-init networks in eval mode map zero input to zero features (conv without bias,
    BN with running mean 0 and shift 0, FPN biases 0), so zero batch padding acts exactly
    like a conv's zero padding and the features of A's real region do not depend on how
    much padding follows; this is checked first. Then only a mask that matches each
    level's valid extent makes the values agree: A's padding differs (24 vs 56 rows) and
    the padded cells near the image hold non-zero features.
    """
    bindings = amd_binding(local_weight=local_weight)
    # the same loss without the mask, as a control
    bindings['no_mask'] = amd_binding(local_weight=local_weight, with_mask=False)['fpn_amd']
    model = build_retina(ckpts['retina'], bindings)
    model.eval()
    shape_a, shape_b = (72, 100), (128, 128)
    packed = packed_images([shape_a, shape_b])
    batch, s_batch, t_batch, data = distill_values(model, packed)
    alone_a, s_a, t_a, data_a = distill_values(model, subset(packed, [0]))
    alone_b, _, _, data_b = distill_values(model, subset(packed, [1]))
    v_batch, v_a, v_b = batch['fpn_amd'], alone_a['fpn_amd'], alone_b['fpn_amd']
    assert tuple(data['inputs'].shape[-2:]) == (128, 128)
    assert tuple(data_a['inputs'].shape[-2:]) == (96, 128)
    assert tuple(data_b['inputs'].shape[-2:]) == (128, 128)

    # precondition: A's features on its real region are the same alone and in the batch
    for level, stride in enumerate(RETINA_STRIDES[:3]):
        h, w = math.ceil(shape_a[0] / stride), math.ceil(shape_a[1] / stride)
        for batch_f, alone_f in ((s_batch, s_a), (t_batch, t_a)):
            torch.testing.assert_close(batch_f[level][0, :, :h, :w],
                                       alone_f[level][0, :, :h, :w], rtol=1e-4, atol=1e-5)
        # next to the image the padded cells are not empty (receptive field): the loss
        # sees features there unless the mask removes them
        assert s_batch[level][0, :, h:].abs().max() > 0

    assert v_a > 0 and v_b > 0
    torch.testing.assert_close(v_batch, (v_a + v_b) / 2, rtol=1e-4, atol=0.0)

    # The value is what an independent crop of each image's valid extent gives.
    weights = (3.0, 2.0, 1.0)
    crit = AMDLoss(local_weight=local_weight)
    expected = 0.0
    for level, (stride, weight) in enumerate(zip(RETINA_STRIDES, weights)):
        per_image = []
        for i, (h_img, w_img) in enumerate((shape_a, shape_b)):
            h, w = math.ceil(h_img / stride), math.ceil(w_img / stride)
            per_image.append(crit(s_batch[level][i:i + 1, :, :h, :w],
                                  t_batch[level][i:i + 1, :, :h, :w]))
        expected = expected + weight * sum(per_image) / 2
    torch.testing.assert_close(v_batch, expected, rtol=1e-4, atol=0.0)

    # Controls: the same comparison fails when the mask is ignored or misaligned.
    def batch_value(mask_fn):
        vm = batch_valid_mask(data['data_samples'], data['inputs'])
        return sum(w * crit(s_batch[l], t_batch[l], mask_fn(vm))
                   for l, w in enumerate(weights))

    torch.testing.assert_close(batch_value(lambda vm: vm), v_batch, rtol=1e-5, atol=0.0)
    for wrong in (lambda vm: None,  # mask ignored
                  lambda vm: vm.flip(-2, -1),  # padding assumed at the top / left
                  lambda vm: vm.transpose(-2, -1)):  # H and W swapped
        assert not torch.allclose(batch_value(wrong), expected, rtol=1e-2)
    # ... and through the distiller: without valid_mask, alone != in the batch
    assert not torch.allclose(batch['no_mask'], (alone_a['no_mask'] + alone_b['no_mask']) / 2,
                              rtol=1e-2)


# ------------------------------------------------------------------------------------
# Level selection and weights
# ------------------------------------------------------------------------------------
def test_only_selected_levels_contribute_with_their_weights(ckpts):
    model = build_retina(ckpts['retina'], amd_binding(
        levels=(0, 2), level_weights=(5.0, 0.5), local_weight=0.2, loss_weight=3.0))
    model.train()
    packed = packed_images([(128, 128), (96, 112)])  # padded to 128x128
    data = model.data_preprocessor(packed, True)
    with necks_of_the_step(model) as necks:
        value = model.loss(**data)['distill.loss_fpn_amd']
    s, t = necks['student'], necks['teacher']
    assert len(s) == 4
    vm = batch_valid_mask(data['data_samples'], data['inputs'])
    crit = AMDLoss(local_weight=0.2)
    expected = 3.0 * (5.0 * crit(s[0], t[0], vm) + 0.5 * crit(s[2], t[2], vm))
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=0.0)
    # levels 1 and 3 are left out although their AMD is not negligible
    for level in (1, 3):
        assert crit(s[level], t[level], vm) > 1e-3 * min(
            crit(s[0], t[0], vm), crit(s[2], t[2], vm))
    grads = torch.autograd.grad(value, s, allow_unused=True)
    assert grads[1] is None and grads[3] is None
    for level in (0, 2):
        assert torch.isfinite(grads[level]).all() and grads[level].abs().sum() > 0
    # nothing flows to the padded positions of image 1 (96x112 -> rows >= 24 at P2)
    assert grads[0][1, :, 24:].abs().max() == 0 and grads[0][1, :, :, 28:].abs().max() == 0


def test_level_out_of_range_is_a_clear_error():
    binding = LossBinding('fpn_amd', **amd_binding(levels=(0, 5), level_weights=None)[
        'fpn_amd'])
    feats = tuple(torch.rand(1, 4, 8 // 2**i, 8 // 2**i) for i in range(5))
    sources = {'student.neck': feats, 'teacher.neck': feats,
               'valid_mask': torch.ones(1, 1, 64, 64)}
    with pytest.raises(ValueError, match=r"level 5 requested but 'student.neck' has 5"):
        binding(sources.__getitem__)


# ------------------------------------------------------------------------------------
# AMP
# ------------------------------------------------------------------------------------
def test_finite_under_bf16_autocast_and_gradients_reach_the_neck(ckpts):
    model = build_retina(ckpts['retina'], amd_binding(local_weight=0.2, loss_weight=0.1,
                                                      level_weights=(256**2, 64**2, 16**2)))
    model.train()
    data = model.data_preprocessor(packed_images([(128, 128), (80, 128)]), True)
    with torch.autocast('cpu', dtype=torch.bfloat16), necks_of_the_step(model) as necks:
        losses = model.loss(**data)
    s, t = necks['student'], necks['teacher']
    assert s[0].dtype == torch.bfloat16 and t[0].dtype == torch.bfloat16  # autocast ran
    value = losses['distill.loss_fpn_amd']
    assert value.dtype == torch.float32 and torch.isfinite(value) and value > 0
    # AMD computed in fp32 inside: the same value as outside autocast on the same features
    vm = batch_valid_mask(data['data_samples'], data['inputs'])
    crit = AMDLoss(local_weight=0.2, loss_weight=0.1)
    manual = sum(w * crit(s[l].detach().float(), t[l].float(), vm)
                 for l, w in enumerate((256**2, 64**2, 16**2)))
    torch.testing.assert_close(value.detach(), manual, rtol=1e-5, atol=0.0)
    value.backward()
    neck = model.student.neck
    for conv in (neck.fpn_convs[0].conv, neck.fpn_convs[2].conv, neck.lateral_convs[0].conv):
        assert conv.weight.grad is not None
        assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0
    assert model.student.backbone.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())


# ------------------------------------------------------------------------------------
# The CPU configs
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize('rel', CPU_CONFIGS)
def test_cpu_config_one_training_step(rel, ckpts, tiny_det_data, tmp_path):
    ckpt = ckpts['frcnn'] if 'faster_rcnn' in rel else ckpts['retina']
    cfg = load_config(rel, tiny_det_data, str(tmp_path), max_iters=1,
                      **{'model.teacher_ckpt': ckpt})
    bindings = cfg.model.distill_losses
    assert bindings.fpn_amd.inputs.valid_mask == 'valid_mask'
    assert ('fpn_l2' in bindings) == ('amd+l2' in rel)
    if 'fpn_l2' in bindings:  # AMD + L2 on the same levels
        assert tuple(bindings.fpn_l2.levels) == tuple(bindings.fpn_amd.levels)

    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    before = model.student.neck.fpn_convs[0].conv.weight.detach().clone()
    with necks_of_the_step(model) as necks:
        log_vars = model.train_step(data, optim_wrapper)

    for name in bindings:
        value = float(log_vars[f'distill.loss_{name}'].detach())
        assert math.isfinite(value) and value > 0, (name, value)
    assert math.isfinite(float(torch.as_tensor(log_vars['loss']).detach()))
    after = model.student.neck.fpn_convs[0].conv.weight
    assert torch.isfinite(after).all() and not torch.equal(before, after)
    # the design rule of the configs: every distilled map has at least 4x4 positions
    feats = necks['student']
    for level in bindings.fpn_amd.levels:
        assert min(feats[level].shape[-2:]) >= 4, (level, feats[level].shape)
    # and the (H*W)^2 level weights follow the maps of the 128x128 training size
    sizes = [feats[l].shape[-2] * feats[l].shape[-1] for l in bindings.fpn_amd.levels]
    assert list(bindings.fpn_amd.level_weights) == [hw**2 for hw in sizes]
