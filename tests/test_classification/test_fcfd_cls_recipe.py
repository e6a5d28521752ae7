"""FCFD for classifiers, the authors' recipe around the loss: the teacher's BatchNorm on
batch statistics without drift (``teacher_bn='train'``), bridges a step does not sample
left untouched by SGD (momentum + weight decay), separate KL weights of the mixed paths,
the LeakyReLU per direction and bridges that change resolution."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd.models.losses import FCFDClsLoss
from mmkd.models.losses.kd_loss import kd_loss
from test_classification_distiller import build, raw_batch, save_teacher, TEACHER


def fcfd_binding(**loss_kwargs) -> dict:
    loss = dict(type='FCFDClsLoss', student_channels=(16, 32, 64),
                teacher_channels=(16, 32, 64), l2_weight=1.0, l2_warmup_epochs=0,
                num_mixed_paths=2)
    loss.update(loss_kwargs)
    return dict(fcfd=dict(loss=loss, inputs=dict(
        student_feats='student.stages', teacher_feats='teacher.stages',
        student_logits='student.logits', teacher_logits='teacher.logits',
        student_net='student.staged', teacher_net='teacher.staged')))


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory) -> str:
    return save_teacher(TEACHER, str(tmp_path_factory.mktemp('fcfd_t') / 'teacher.pth'))


def teacher_buffers(teacher: nn.Module) -> dict:
    return {k: v.clone() for k, v in teacher.state_dict().items()
            if 'running' in k or 'num_batches' in k}


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_teacher_bn_mode(mode, teacher_ckpt):
    """``'train'``: the teacher's logits and the teacher stages of an s->t mixed path
    normalise with batch statistics (equal to a train-mode copy run by hand) and its
    running statistics stay those of the checkpoint after a training step; ``'eval'``:
    running statistics."""
    model = build(teacher_ckpt, fcfd_binding(), teacher_bn=mode).train()
    loss = model.distill_losses['fcfd'].loss
    loss.sample_paths = lambda: [('s2t', 0)]
    seen = {}
    handle = loss.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    before = teacher_buffers(model.teacher)
    data = model.data_preprocessor(raw_batch(8), True)
    out = model.loss(**data)
    handle.remove()

    x = model.teacher_input(data['inputs'])
    by_batch = copy.deepcopy(model.teacher).train()  # batch statistics (its own copy)
    by_running = model.teacher
    with torch.no_grad():
        logits = {'train': by_batch(x, mode='tensor'), 'eval': by_running(x, mode='tensor')}
        # the s->t path after stage 0: bridge, then teacher layer2, layer3 and head
        bridged = loss.s2t[0](seen['student_feats'][0])
        mixed = {}
        for key, net in (('train', by_batch), ('eval', by_running)):
            st = net.backbone.layer3(net.backbone.layer2(bridged))
            mixed[key] = kd_loss(net.head(net.neck((st, ))), logits[key], loss.temperature)
    other = 'eval' if mode == 'train' else 'train'
    assert (logits['train'] - logits['eval']).abs().max() > 1e-3  # the modes differ here
    torch.testing.assert_close(seen['teacher_logits'], logits[mode], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(seen['teacher_logits'], logits[other], rtol=1e-4, atol=1e-5)
    kl_mix = out['distill.loss_fcfd.kl_mix']
    torch.testing.assert_close(kl_mix, mixed[mode], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(kl_mix, mixed[other], rtol=1e-4, atol=1e-6)

    # collect_loss_inputs (the distiller in eval mode meanwhile) sees the same teacher
    collected = model.collect_loss_inputs(raw_batch(8), 'fcfd')['fcfd'][0]
    torch.testing.assert_close(collected['teacher_logits'], logits[mode], rtol=1e-4,
                               atol=1e-5)
    assert model.training

    # a full training step: the teacher's running statistics are untouched, its BN
    # layers back in eval mode
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    model.train_step(raw_batch(8, seed=1), wrapper)
    for key, value in teacher_buffers(model.teacher).items():
        assert torch.equal(value, before[key]), key
    bns = [m for m in model.teacher.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training and m.track_running_stats for m in bns)


def test_teacher_bn_is_checked(teacher_ckpt):
    with pytest.raises(ValueError, match="teacher_bn must be one of \\('eval', 'train'\\)"):
        build(teacher_ckpt, fcfd_binding(), teacher_bn='frozen', load=False)


def test_unsampled_bridge_untouched_by_sgd_with_momentum_and_weight_decay(teacher_ckpt):
    """Step 1 samples both t->s bridges (they get momentum); step 2 samples only t2s[1]:
    t2s[0] has no gradient when the optimizer steps, and its weights and momentum are
    exactly those after step 1, while t2s[1] moves."""
    model = build(teacher_ckpt, fcfd_binding()).train()
    loss = model.distill_losses['fcfd'].loss
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                weight_decay=5e-4)
    wrapper = OptimWrapper(optimizer)
    loss.sample_paths = lambda: [('t2s', 0), ('t2s', 1)]
    model.train_step(raw_batch(4), wrapper)
    idle, used = loss.t2s[0], loss.t2s[1]
    weights = {n: p.detach().clone() for n, p in idle.named_parameters()}
    momenta = {n: optimizer.state[p]['momentum_buffer'].clone()
               for n, p in idle.named_parameters()}
    assert all(m.abs().sum() > 0 for m in momenta.values())
    used_before = [p.detach().clone() for p in used.parameters()]

    loss.sample_paths = lambda: [('s2t', 0), ('t2s', 1)]
    at_step = {}
    handle = optimizer.register_step_pre_hook(lambda opt, args, kwargs: at_step.update(
        idle=[p.grad for p in idle.parameters()], used=[p.grad for p in used.parameters()]))
    model.train_step(raw_batch(4, seed=1), wrapper)
    handle.remove()
    assert all(g is None for g in at_step['idle'])
    assert all(g is not None for g in at_step['used'])
    for name, p in idle.named_parameters():
        assert torch.equal(p.detach(), weights[name]), name
        assert torch.equal(optimizer.state[p]['momentum_buffer'], momenta[name]), name
    assert any(not torch.equal(p.detach(), b) for p, b in zip(used.parameters(), used_before))


def test_accumulated_steps_keep_every_bridge_a_forward_used(teacher_ckpt):
    """With gradient accumulation a bridge used by any forward since the last update
    keeps its gradient."""
    model = build(teacher_ckpt, fcfd_binding()).train()
    loss = model.distill_losses['fcfd'].loss
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                weight_decay=5e-4)
    wrapper = OptimWrapper(optimizer, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 2)
    before = [[p.detach().clone() for p in b.parameters()] for b in loss.t2s]
    for paths, seed in (([('t2s', 0), ('s2t', 1)], 0), ([('s2t', 0), ('s2t', 1)], 1)):
        loss.sample_paths = lambda paths=paths: paths
        model.train_step(raw_batch(4, seed=seed), wrapper)
    moved = [any(not torch.equal(p.detach(), b) for p, b in zip(bridge.parameters(), old))
             for bridge, old in zip(loss.t2s, before)]
    assert moved == [True, False]


# ------------------------------------------------------------------ loss options
def conv_bn(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class Staged:
    """A duck-typed StagedClassifier: two stages and a linear head on GAP."""

    def __init__(self, channels, strides, seed: int) -> None:
        torch.manual_seed(seed)
        self.stages = nn.ModuleList([conv_bn(3, channels[0], strides[0]),
                                     conv_bn(channels[0], channels[1], strides[1])])
        self.fc = nn.Linear(channels[1], 5)

    def stage_module(self, k):
        return self.stages[k]

    def run_stages(self, x, start, stop=None):
        outs = []
        for k in range(start, 2 if stop is None else stop):
            x = self.stages[k](x)
            outs.append(x)
        return outs

    def head(self, x):
        return self.fc(x.mean((2, 3)))

    def run(self, x):
        feats = self.run_stages(x, 0)
        return feats, self.head(feats[-1])


def test_kl_mix_weight_and_activation_per_direction():
    student, teacher = Staged((4, 8), (1, 2), 0), Staged((6, 8), (1, 2), 1)
    x = torch.randn(4, 3, 8, 8)
    s_feats, s_logits = student.run(x)
    with torch.no_grad():
        t_feats, t_logits = teacher.run(x)
    outs = {}
    for weight in (None, 0.2):
        torch.manual_seed(3)
        loss = FCFDClsLoss((4, 8), (6, 8), kl_weight=1.5, kl_mix_weight=weight,
                           l2_warmup_epochs=0)
        loss.sample_paths = lambda: [('s2t', 0), ('t2s', 0)]
        outs[weight] = loss(s_feats, t_feats, s_logits, t_logits, student, teacher)
    assert outs[None]['kl_mix'] > 0
    torch.testing.assert_close(outs[0.2]['kl_s'], outs[None]['kl_s'])
    torch.testing.assert_close(outs[0.2]['kl_mix'], outs[None]['kl_mix'] * 0.2 / 1.5)

    loss = FCFDClsLoss((4, 8), (6, 8), bridge_activation=dict(s2t=False, t2s=True))
    assert not any(isinstance(m, nn.LeakyReLU) for m in loss.s2t.modules())
    assert all(isinstance(b[-1], nn.LeakyReLU) for b in loss.t2s)
    with pytest.raises(ValueError, match=r'bridge_activation must be a bool or dict'):
        FCFDClsLoss((4, 8), (6, 8), bridge_activation=dict(s2t=False))


def test_bridges_that_change_resolution():
    """Student maps twice the teacher's size: s->t bridges are stride-2 convs, t->s
    bridges 4x4 stride-2 transposed convs; every path runs and trains its bridges."""
    student, teacher = Staged((4, 8), (1, 2), 0), Staged((6, 8), (2, 2), 1)
    x = torch.randn(4, 3, 8, 8)
    s_feats, s_logits = student.run(x)
    with torch.no_grad():
        t_feats, t_logits = teacher.run(x)
    assert [f.shape[-1] for f in s_feats] == [8, 4] and [f.shape[-1] for f in t_feats] == [4, 2]
    loss = FCFDClsLoss((4, 8), (6, 8), l2_warmup_epochs=0, student_strides=(1, 2),
                       teacher_strides=(2, 4))
    down, up = loss.s2t[0][0], loss.t2s[0][0]
    assert isinstance(down, nn.Conv2d) and down.stride == (2, 2) and down.bias is not None
    assert isinstance(up, nn.ConvTranspose2d) and up.stride == (2, 2)
    assert up.kernel_size == (4, 4) and up.bias is not None
    loss.sample_paths = lambda: [('s2t', 0), ('t2s', 0)]
    out = loss(s_feats, t_feats, s_logits, t_logits, student, teacher)
    sum(out.values()).backward()
    assert all(torch.isfinite(v) and v > 0 for v in out.values())
    for bridge in (loss.s2t[0], loss.s2t[1], loss.t2s[0]):
        assert bridge[0].weight.grad.abs().sum() > 0

    same = FCFDClsLoss((4, 8), (6, 8), l2_warmup_epochs=0)
    with pytest.raises(ValueError, match='s2t bridge of stage 0 gives .*student_strides'):
        same(s_feats, t_feats, s_logits, t_logits, student, teacher)
    with pytest.raises(ValueError, match='from stride 1 to stride 4 is not supported'):
        FCFDClsLoss((4, 8), (6, 8), student_strides=(1, 2), teacher_strides=(4, 4))


DDP_WORKER = r'''
import json
import sys

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper

rank, world, init_file, tests_dir, ckpt = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                           sys.argv[4], sys.argv[5])
sys.path.insert(0, tests_dir)
from test_fcfd_cls_recipe import build, fcfd_binding, raw_batch  # noqa: E402
from mmkd.utils.cli import close_distributed  # noqa: E402

dist.init_process_group('gloo', init_method='file://' + init_file, rank=rank,
                        world_size=world)
torch.manual_seed(0)
model = build(ckpt, fcfd_binding()).train()  # the same weights on both ranks
torch.manual_seed(100 + rank)  # the global RNGs differ from here on: paths must not
ddp = MMDistributedDataParallel(module=model, device_ids=None, broadcast_buffers=False,
                                find_unused_parameters=False)
wrapper = OptimWrapper(torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9,
                                       weight_decay=5e-4))
loss = model.distill_losses['fcfd'].loss
paths = []
for step in range(4):
    before = [[p.detach().clone() for p in b.parameters()] for b in loss.t2s]
    ddp.train_step(raw_batch(4, seed=10 * rank + step), wrapper)
    used = {j for d, j in loss.last_paths if d == 't2s'}
    for j, bridge in enumerate(loss.t2s):
        moved = any(not torch.equal(p.detach(), q) for p, q in zip(bridge.parameters(),
                                                                    before[j]))
        assert moved == (j in used), (step, j, loss.last_paths)
    paths.append(loss.last_paths)
print(json.dumps(dict(paths=paths, sums=[float(p.double().sum())
                                         for p in model.parameters()])))
close_distributed()
'''


def test_ddp_without_find_unused_parameters(teacher_ckpt, tmp_path):
    """Two gloo ranks with different global RNGs: they sample the same paths, DDP runs
    without ``find_unused_parameters``, a bridge moves exactly in the steps that use it
    and the ranks' weights stay identical."""
    import json
    import os.path as osp

    from helpers import run_gloo_ranks
    outs = run_gloo_ranks(tmp_path, DDP_WORKER,
                          lambda r: [osp.dirname(osp.abspath(__file__)), teacher_ckpt])
    ranks = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    assert ranks[0]['paths'] == ranks[1]['paths']
    assert len({tuple(map(tuple, p)) for p in ranks[0]['paths']}) > 1  # paths vary
    assert ranks[0]['sums'] == ranks[1]['sums']
