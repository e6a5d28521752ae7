"""LSHFM wired into the detection distiller: the CPU configs (Faster R-CNN on the RoI
embedding, RetinaNet on the unfolded cls tower with the keep mask), sigma from the loaded
teacher, reproducible hash buffers, and the median-bias hook."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from helpers import (detection_batch, load_config, repo_path, run_gloo_ranks,
                     save_random_teachers)
from mmkd.hooks import LSHBiasInitHook
from mmkd.models.distillers.anchor_masks import anchor_keep_mask
from mmkd.models.losses import DenseLSHLoss, LSHLoss

CONFIGS = dict(
    frcnn='configs/lsh/lsh_faster_rcnn_r18_r18w16_fpn_synth.py',
    retina='configs/lsh/lsh_retinanet_r18_r18w16_fpn_synth.py')
SIGMA_FROM = dict(frcnn='roi_head.bbox_head.fc_cls.weight',
                  retina='bbox_head.retina_cls.weight')


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    return save_random_teachers(tmp_path_factory.mktemp('lsh_ckpts'), seed=5)


def build(det: str, ckpt: str, seed: int = 0):
    """The distiller of the CPU config, teacher loaded from ``ckpt``."""
    cfg = Config.fromfile(repo_path(CONFIGS[det]))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.teacher_ckpt = ckpt
    init_default_scope('mmdet')
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


@pytest.mark.parametrize('det', ['frcnn', 'retina'])
def test_one_step_gives_finite_lsh_loss_and_trains_only_the_student(det, ckpts):
    model = build(det, ckpts[det])
    loss_module = model.distill_losses['lsh'].loss
    assert type(loss_module) is (LSHLoss if det == 'frcnn' else DenseLSHLoss)
    model.train()
    losses = model(**detection_batch(model), mode='loss')
    value = losses['distill.loss_lsh']
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    value.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    if det == 'frcnn':
        fc = model.student.roi_head.bbox_head.shared_fcs[-1]
        assert fc.weight.grad.abs().sum() > 0
        assert model.student.roi_head.bbox_head.fc_cls.weight.grad is None
    else:
        assert len(model.student.bbox_head.cls_convs) == 2  # [1] is the tower's last conv
        tower = model.student.bbox_head.cls_convs[1].conv
        assert tower.weight.grad.abs().sum() > 0
        assert model.student.bbox_head.retina_cls.weight.grad is None  # after the tower
        assert all(p.grad is None for p in model.student.bbox_head.reg_convs.parameters())
    assert model.student.backbone.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('det', ['frcnn', 'retina'])
def test_sigma_is_the_loaded_teachers_classifier_std(det, ckpts):
    model = build(det, ckpts[det])
    loss = model.distill_losses['lsh'].loss
    assert loss.sigma_from == SIGMA_FROM[det]
    weight = torch.load(ckpts[det])['state_dict'][SIGMA_FROM[det]]
    std = weight.double().std()
    # the same seeded draw with sigma = 1, scaled by the checkpoint's std
    unit = type(loss)(loss.in_channels, num_hashes=loss.num_hashes, seed=loss.seed)
    torch.testing.assert_close(loss.projection.weight.double(),
                               unit.projection.weight.double() * std, rtol=1e-5, atol=0)
    assert abs(float(loss.projection.weight.double().std() / std) - 1) < 0.02
    assert float(std) != pytest.approx(1.0, abs=0.1)  # the test would be vacuous otherwise


@pytest.mark.parametrize('det', ['frcnn', 'retina'])
def test_lsh_buffers_identical_in_two_distillers_and_checkpointed(det, ckpts):
    a = build(det, ckpts[det], seed=1)
    b = build(det, ckpts[det], seed=2)  # another global RNG state
    keys = ['distill_losses.lsh.loss.projection.weight',
            'distill_losses.lsh.loss.projection.bias']
    state_a, state_b = a.state_dict(), b.state_dict()
    for key in keys:
        assert key in state_a
        assert torch.equal(state_a[key], state_b[key]), key
    assert not any(k.startswith('distill_losses.lsh') for k, _ in a.named_parameters())


def teacher_rows_recorder(det, model):
    """Record, independently of the distiller's sources, what the teacher produces that
    the LSH loss hashes: the fc_cls input (Faster R-CNN) or the cls tower outputs."""
    records = []
    if det == 'frcnn':
        handle = model.teacher.roi_head.bbox_head.fc_cls.register_forward_pre_hook(
            lambda m, inputs: records.append(inputs[0].detach().clone()))
    else:
        handle = model.teacher.bbox_head.cls_convs[1].register_forward_hook(
            lambda m, inputs, output: records.append(output.detach().clone()))
    return records, handle


def neighbourhoods(x):
    """[B, C, H, W] -> [B, H*W, 9C] from slices of a zero-padded copy (F.unfold layout)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    patches = torch.stack([padded[:, :, dy:dy + h, dx:dx + w]
                           for dy in range(3) for dx in range(3)], dim=2)
    return patches.reshape(b, c * 9, h * w).transpose(1, 2)


@pytest.mark.parametrize('det', ['frcnn', 'retina'])
def test_bias_hook_sets_minus_median_of_teacher_projections(det, ckpts, tiny_det_data,
                                                             tmp_path):
    cfg = load_config(CONFIGS[det], tiny_det_data, str(tmp_path),
                      **{'model.teacher_ckpt': ckpts[det]})
    init_default_scope('mmdet')
    loader = Runner.build_dataloader(cfg.train_dataloader)
    model = build(det, ckpts[det])
    model.train()
    loss = model.distill_losses['lsh'].loss
    assert torch.equal(loss.projection.bias, torch.zeros_like(loss.projection.bias))

    records, handle = teacher_rows_recorder(det, model)
    batches = []
    original = model.collect_loss_inputs

    def spy(data_batch, names):
        batches.append(data_batch)
        return original(data_batch, names)

    model.collect_loss_inputs = spy
    student_before = copy.deepcopy(model.student.state_dict())
    rng_before = torch.get_rng_state()
    hook = LSHBiasInitHook(max_batches=2, max_samples=10 ** 6)  # no subsampling
    bias = hook.fit(model, loader)['lsh']
    handle.remove()

    assert len(batches) == 2
    if det == 'frcnn':
        rows = torch.cat(records)  # [R, 256] over both batches
    else:
        # 4 levels (P2-P5) per batch; keep mask recomputed from each batch's ground truth
        n = 4
        assert len(records) == n * len(batches)
        rows = []
        for i, data_batch in enumerate(batches):
            levels = records[n * i:n * i + n]
            samples = model.data_preprocessor(data_batch, True)['data_samples']
            masks = anchor_keep_mask(model.student.bbox_head,
                                     [x.shape[-2:] for x in levels], samples)
            feats = torch.cat([neighbourhoods(x) for x in levels], 1)
            rows.append(feats[torch.cat(masks, 1)])
        rows = torch.cat(rows)
    assert rows.shape[1] == loss.in_channels and rows.shape[0] > 100
    proj = rows.double() @ loss.projection.weight.double().t()
    expect = -proj.median(dim=0).values
    torch.testing.assert_close(bias.double(), expect, rtol=1e-4, atol=1e-5)
    assert bias is loss.projection.bias and bias.abs().max() > 0
    # every bit now splits the teacher rows about 50/50
    frac = ((proj + bias.double()) > 0).double().mean(0)
    assert (frac - 0.5).abs().max() < 0.05
    # the pass changed neither the student (BN statistics included) nor the RNG
    for key, value in model.student.state_dict().items():
        assert torch.equal(value, student_before[key]), key
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert model.training and model.student.training


def test_bias_hook_in_a_run_and_skipped_on_resume(ckpts, tiny_det_data, tmp_path):
    cfg = load_config(CONFIGS['frcnn'], tiny_det_data, str(tmp_path), max_iters=1,
                      **{'model.teacher_ckpt': ckpts['frcnn']})
    cfg.custom_hooks = [dict(type='DistillScheduleHook'),
                        dict(type='LSHBiasInitHook', max_batches=1, max_samples=4096)]
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.val_interval = 10
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, LSHBiasInitHook))
    calls = []
    original = hook.fit
    hook.fit = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    runner.train()
    assert calls == [1]
    bias = runner.model.distill_losses['lsh'].loss.projection.bias
    assert bias.abs().max() > 0
    assert math.isfinite(runner.message_hub.get_scalar('train/distill.loss_lsh').current())
    # a resumed run (iter > 0) keeps the checkpoint's bias
    saved = bias.clone()

    class Resumed:
        iter = 5
        model = runner.model
        logger = runner.logger

    hook.before_train(Resumed())
    assert calls == [1] and torch.equal(bias, saved)
    state = torch.load(str(tmp_path / 'iter_1.pth'), weights_only=False)['state_dict']
    assert torch.equal(state['distill_losses.lsh.loss.projection.bias'], saved)


@pytest.mark.parametrize('det', ['frcnn', 'retina'])
def test_collect_loss_inputs_returns_what_the_loss_receives(det, ckpts):
    model = build(det, ckpts[det])
    data = detection_batch(model)
    packed = dict(inputs=[x for x in demo_mm_inputs(
        2, [[3, 128, 128], [3, 96, 128]], num_classes=4, num_items=[3, 2])['inputs']],
        data_samples=data['data_samples'])
    captured = model.collect_loss_inputs(packed, 'lsh')['lsh']
    assert len(captured) == 1
    kwargs = captured[0]
    if det == 'frcnn':
        assert set(kwargs) == {'student_feat', 'teacher_feat'}
        assert kwargs['teacher_feat'].shape[1] == 256
        assert kwargs['teacher_feat'].shape == kwargs['student_feat'].shape
    else:
        assert set(kwargs) == {'student_feat', 'teacher_feat', 'mask'}
        assert len(kwargs['teacher_feat']) == 4 and len(kwargs['mask']) == 4  # P2-P5
        assert kwargs['mask'][0].dtype == torch.bool
        assert kwargs['teacher_feat'][0].shape[:2] == (2, 64)
    with pytest.raises(KeyError, match='no distill loss named'):
        model.collect_loss_inputs(packed, 'nope')


DDP_WORKER = r'''
import sys
import torch
import torch.distributed as dist
import torch.nn as nn
from mmkd.hooks import LSHBiasInitHook
from mmkd.models.losses import LSHLoss
from mmkd.utils.cli import close_distributed

rank, world, init_file, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.init_process_group('gloo', init_method='file://' + init_file, rank=rank,
                        world_size=world)


class Binding(nn.Module):
    def __init__(self):
        super().__init__()
        self.loss = LSHLoss(8, num_hashes=16, seed=3)


class FakeDistiller(nn.Module):
    """Hands the hook each batch as the LSH loss's teacher_feat."""
    def __init__(self):
        super().__init__()
        self.distill_losses = nn.ModuleDict(dict(lsh=Binding()))

    def collect_loss_inputs(self, data_batch, names):
        return {n: [dict(student_feat=data_batch, teacher_feat=data_batch)] for n in names}


def shard(r):  # rank r's batches: different lengths and an offset per rank
    g = torch.Generator().manual_seed(100 + r)
    return [torch.randn(5 + 3 * r + i, 8, generator=g) + r for i in range(3)]


model = FakeDistiller()
torch.manual_seed(rank)  # must not matter
LSHBiasInitHook(max_batches=2 * world, max_samples=10 ** 6).fit(model, shard(rank))
torch.save(dict(bias=model.distill_losses['lsh'].loss.projection.bias,
                weight=model.distill_losses['lsh'].loss.projection.weight), out)
close_distributed()  # a rank exiting while gloo still talks to the other aborts it
'''


def test_bias_hook_is_identical_across_ranks_and_uses_every_ranks_rows(tmp_path):
    """Two gloo ranks with different data: both end with the same bias, the median over
    the union of their rows (each rank used ceil(max_batches / world) = 2 batches)."""
    run_gloo_ranks(tmp_path, DDP_WORKER, lambda r: [tmp_path / f'{r}.pth'])
    a, b = (torch.load(str(tmp_path / f'{r}.pth'), weights_only=True) for r in range(2))
    assert torch.equal(a['bias'], b['bias']) and torch.equal(a['weight'], b['weight'])
    rows = []
    for r in range(2):
        g = torch.Generator().manual_seed(100 + r)
        rows += [torch.randn(5 + 3 * r + i, 8, generator=g) + r for i in range(3)][:2]
    proj = torch.cat(rows).double() @ a['weight'].double().t()
    torch.testing.assert_close(a['bias'].double(), -proj.median(0).values, rtol=1e-5,
                               atol=1e-6)
