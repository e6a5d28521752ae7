"""FCFD for classifiers: the terms against a hand-written computation of the mixed paths,
gradient routing (through the frozen teacher into the bridges), separate BN statistics of
mixed paths, path sampling and the L2 ramp."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from mmkd.models.distillers import StagedClassifier, freeze
from mmkd.models.losses import FCFDClsLoss
from mmkd.models.losses.fcfd_cls_loss import fcfd_l2_terms


def classifier(arch: str, seed: int):
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    model = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='CIFARResNet', arch=arch),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64)))
    model.init_weights()
    return model


def stages(model, x):
    b = model.backbone
    s0 = b.layer1(F.relu(b.bn1(b.conv1(x))))
    s1 = b.layer2(s0)
    return [s0, s1, b.layer3(s1)]


def kl(z, zt, T=4.0):
    p_t = (zt.double() / T).softmax(1)
    return (p_t * (p_t.log() - (z.double() / T).log_softmax(1))).sum(1).mean() * T * T


@pytest.fixture()
def nets():
    student = classifier('resnet8', 0).train()
    teacher = classifier('resnet14', 1)
    with torch.no_grad():  # realistic BN statistics, confident logits, then frozen
        for _ in range(2):
            teacher.extract_feat(torch.randn(8, 3, 32, 32))
        teacher.head.fc.weight.mul_(300)
        student.head.fc.weight.mul_(100)
    return student, freeze(teacher)


def test_l2_terms_golden():
    gen = torch.Generator().manual_seed(0)
    t = [torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 5, 2, 2, generator=gen)]
    feats = [[torch.randn(2, 3, 4, 4, generator=gen)],
             [torch.randn(2, 5, 2, 2, generator=gen) for _ in range(2)]]
    expected = ((feats[0][0].double() - t[0].double())**2).mean()
    gap = lambda v: v.double().clamp(min=0).mean((2, 3))  # noqa: E731
    for f in feats[1]:
        expected = expected + ((f.double() - t[1].double())**2).mean() + \
            ((gap(f) - gap(t[1]))**2).mean()
    torch.testing.assert_close(fcfd_l2_terms(feats, t).double(), expected)


def test_terms_equal_the_mixed_paths_computed_by_hand(nets, monkeypatch):
    """Paths s->t after stage 0 and t->s after stage 1."""
    student, teacher = nets
    loss = FCFDClsLoss((16, 32, 64), (16, 32, 64), temperature=4.0, l2_weight=2.0,
                       l2_warmup_epochs=0, num_mixed_paths=2)
    monkeypatch.setattr(loss, 'sample_paths', lambda: [('s2t', 0), ('t2s', 1)])
    x = torch.randn(6, 3, 32, 32)
    ref_student, ref_loss = copy.deepcopy(student), copy.deepcopy(loss)
    s_feats = stages(student, x)
    s_logits = student.head(student.neck((s_feats[-1], )))
    with torch.no_grad():
        t_feats = stages(teacher, x)
        t_logits = teacher.head(teacher.neck((t_feats[-1], )))
    out = loss(s_feats, t_feats, s_logits, t_logits, StagedClassifier(student, 'student'),
               StagedClassifier(teacher, 'teacher'))

    # by hand, on copies (BN batch statistics make the copies compute the same)
    with torch.no_grad():
        rs = stages(ref_student, x)
        b = [ref_loss.s2t[k](rs[k]) for k in range(3)]
        st1 = teacher.backbone.layer2(b[0])
        st2 = teacher.backbone.layer3(st1)
        st_logits = teacher.head(teacher.neck((st2, )))
        ts2 = ref_student.backbone.layer3(ref_loss.t2s[1](t_feats[1]))
        ts_logits = ref_student.head(ref_student.neck((ts2, )))
        l2 = fcfd_l2_terms([[b[0]], [b[1], st1], [b[2], st2]], t_feats)
    assert out['kl_s'] > 0.05 and out['kl_mix'] > 0.05  # not near-uniform softmaxes
    torch.testing.assert_close(out['kl_s'].double(), kl(s_logits, t_logits), rtol=1e-4,
                               atol=1e-6)
    torch.testing.assert_close(out['kl_mix'].double(),
                               kl(st_logits, t_logits) + kl(ts_logits, t_logits),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out['l2'], 2.0 * l2)


def test_gradients_and_separate_bn_statistics(nets, monkeypatch):
    student, teacher = nets
    loss = FCFDClsLoss((16, 32, 64), (16, 32, 64), l2_warmup_epochs=0)
    monkeypatch.setattr(loss, 'sample_paths', lambda: [('s2t', 1), ('t2s', 1)])
    x = torch.randn(6, 3, 32, 32)
    s_feats = stages(student, x)
    s_logits = student.head(student.neck((s_feats[-1], )))
    own_stats = {k: v.clone() for k, v in student.state_dict().items() if 'running' in k}
    with torch.no_grad():
        t_feats = stages(teacher, x)
        t_logits = teacher.head(teacher.neck((t_feats[-1], )))
    out = loss(s_feats, t_feats, s_logits, t_logits, StagedClassifier(student, 'student'),
               StagedClassifier(teacher, 'teacher'))
    # the t->s path ran student layer3 in train mode on its own statistics
    for key, value in student.state_dict().items():
        if 'running' in key:
            assert torch.equal(value, own_stats[key]), f'mixed path changed {key}'
    assert loss._bn_stats and all(tag == 't2s1' for tag, _ in loss._bn_stats)
    ghost_mean = loss._bn_stats[('t2s1', 0)][0]
    assert ghost_mean.abs().sum() > 0  # ... which it updated
    sum(out.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    # s->t after stage 1: KL and L2 through the frozen teacher layer3 into the bridge
    assert loss.s2t[1][0].weight.grad.abs().sum() > 0
    assert loss.t2s[1][0].weight.grad.abs().sum() > 0
    # a bridge of a path not sampled: zero gradient after backward (DDP sees every
    # parameter); the optimizer step then gets None (test_fcfd_cls_recipe.py)
    assert loss.t2s[0][0].weight.grad is not None
    assert loss.t2s[0][0].weight.grad.abs().sum() == 0
    assert student.backbone.layer3[0].conv1.weight.grad.abs().sum() > 0


def test_sampling_ramp_and_errors(nets):
    loss = FCFDClsLoss((16, 32, 64), (16, 32, 64), l2_warmup_epochs=20)
    assert loss.mixed_paths == [('s2t', 0), ('s2t', 1), ('t2s', 0), ('t2s', 1)]
    seen = set()
    for _ in range(30):
        paths = loss.sample_paths()
        assert len(set(paths)) == 2
        seen.update(paths)
    assert seen == set(loss.mixed_paths)
    # the loss's own generator, seeded from the global RNG on first use
    one, two = (FCFDClsLoss((16, 32, 64), (16, 32, 64)) for _ in range(2))
    torch.manual_seed(0)
    draws = [one.sample_paths() for _ in range(5)]
    torch.manual_seed(0)
    assert [two.sample_paths() for _ in range(5)] == draws
    state = torch.get_rng_state()
    one.sample_paths()
    assert torch.equal(torch.get_rng_state(), state)  # no global draw after the first
    assert FCFDClsLoss((1, 2, 3, 4), (1, 2, 3, 4), directions=('t2s', )).mixed_paths == \
        [('t2s', 0), ('t2s', 1), ('t2s', 2)]

    student, teacher = nets
    x = torch.randn(2, 3, 32, 32)
    s_feats = stages(student, x)
    s_logits = student.head(student.neck((s_feats[-1], )))
    with torch.no_grad():
        t_feats = stages(teacher, x)
        t_logits = teacher.head(teacher.neck((t_feats[-1], )))
    args = (s_feats, t_feats, s_logits, t_logits, StagedClassifier(student),
            StagedClassifier(teacher))
    with pytest.raises(ValueError, match="wire progress='progress'"):
        loss(*args)
    loss.sample_paths = lambda: [('s2t', 0), ('t2s', 1)]
    first = loss(*args, progress=(0, 0))['l2']
    later = loss(*args, progress=(5000, 25))['l2']
    torch.testing.assert_close(first * 20, later)  # epoch 0 of a 20-epoch ramp: 1/20
    with pytest.raises(ValueError, match=r'student stages have \[16, 32, 64\] channels'):
        FCFDClsLoss((16, 32, 32), (16, 32, 64))(*args, progress=(0, 0))
