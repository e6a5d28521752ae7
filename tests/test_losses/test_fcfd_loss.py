"""FCFDRoILoss / FCFDDenseLoss: golden values against an independent float64
computation, gradient routing of each term, and DDP safety of the bridges."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import init_default_scope

from mmkd.models.losses import FCFDDenseLoss, FCFDRoILoss, kd_loss
from mmkd.models.losses.fcfd_loss import (fcfd_appearance_loss, fcfd_dense_paths,
                                          fcfd_dense_terms, fcfd_roi_terms)
from mmkd.models.recorders import RoIHeadRecorder
from mmkd.models.recorders import roi_recorder
from mmkd.models.recorders.roi_recorder import extract_rois_jointly, forward_rois_jointly

C = 4                       # FPN channels
SIZES = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
K = 3                       # classes (RoI head: K + 1 logits, 4K deltas)
A = 2                       # anchors per location (dense head)
TERMS = ('app', 'kl_s', 'reg_s', 'kl_st', 'reg_st', 'kl_ts', 'reg_ts')


def feats(g, batch=2, scale=1.0):
    return tuple(scale * torch.randn(batch, C, h, w, generator=g) for h, w in SIZES)


def randomise_bridges(loss, g):
    """Random BN affine so that the golden test covers it."""
    for bridge in list(loss.s2t) + list(loss.t2s):
        bridge.bn.weight.data = 1 + 0.3 * torch.randn(C, generator=g)
        bridge.bn.bias.data = 0.3 * torch.randn(C, generator=g)


# ---------------------------------------------------------------- float64 reference
def ref_bridge(bridge, x):
    """conv3x3 (no bias) + BatchNorm with batch statistics (training mode), float64."""
    y = F.conv2d(x.double(), bridge.conv.weight.detach().double(), padding=1)
    mean = y.mean(dim=(0, 2, 3), keepdim=True)
    var = y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    w = bridge.bn.weight.detach().double().view(1, -1, 1, 1)
    b = bridge.bn.bias.detach().double().view(1, -1, 1, 1)
    return (y - mean) / torch.sqrt(var + bridge.bn.eps) * w + b


def ref_softmax_kl(z, z_t, T):
    p_t = torch.softmax(z_t.double() / T, -1)
    log_p = torch.log_softmax(z.double() / T, -1)
    return (p_t * (torch.log(p_t) - log_p)).sum() / z.size(0) * T * T


def ref_sigmoid_kl(z, z_t, T):
    p, q = torch.sigmoid(z_t.double() / T), torch.sigmoid(z.double() / T)
    return (p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))) * T * T


def ref_mse(a, b):
    return ((a.double() - b.double())**2).mean()


# ---------------------------------------------------------------- fake heads
def fake_roi_head(w_cls, w_reg, num_inputs=4):
    """(feats, rois) -> outputs: per-image average of the first 4 levels + box coords,
    then two linear maps. Works in any dtype (float64 for the reference)."""

    def forward(x, rois):
        idx = rois[:, 0].long()
        pooled = torch.cat([f.mean((2, 3))[idx] for f in x[:num_inputs]], 1)
        z = torch.cat([pooled, rois[:, 1:].to(pooled.dtype) / 64], 1)
        return SimpleNamespace(cls_score=z @ w_cls.to(z.dtype),
                               bbox_pred=z @ w_reg.to(z.dtype))

    return forward


def fake_dense_head(w_cls, w_reg):
    """feats -> (cls_scores, bbox_preds): a 1x1 conv shared by the levels."""

    def forward(x):
        cls = [F.conv2d(f, w_cls.to(f.dtype)[..., None, None]) for f in x]
        reg = [F.conv2d(f, w_reg.to(f.dtype)[..., None, None]) for f in x]
        return cls, reg

    return forward


def roi_case(seed=0, num_rois=7):
    g = torch.Generator().manual_seed(seed)
    d = 4 * C + 4
    heads = {side: fake_roi_head(torch.randn(d, K + 1, generator=g),
                                 0.3 * torch.randn(d, 4 * K, generator=g))
             for side in ('student', 'teacher')}
    xy = torch.rand(num_rois, 2, generator=g) * 80
    wh = torch.rand(num_rois, 2, generator=g) * 40 + 4
    rois = torch.cat([torch.randint(0, 2, (num_rois, 1), generator=g).float(), xy, xy + wh],
                     1)
    p_s, p_t = feats(g), feats(g, scale=2.0)
    t_out = heads['teacher'](p_t, rois)
    # pass 1 is the student's own training pass: deliberately NOT the fake head's output
    # on p_s, to show that the loss reuses it instead of recomputing it
    s_cls = torch.randn(num_rois, K + 1, generator=g)
    s_reg = 0.3 * torch.randn(num_rois, 4 * K, generator=g)
    return g, heads, rois, p_s, p_t, s_cls, s_reg, t_out


def test_roi_golden_values():
    g, heads, rois, p_s, p_t, s_cls, s_reg, t_out = roi_case()
    T, w_app, w_kl, w_reg, w_all = 2.0, 0.7, 1.3, 0.9, 1.5
    loss = FCFDRoILoss(in_channels=C, temperature=T, app_weight=w_app, kl_weight=w_kl,
                       reg_weight=w_reg, loss_weight=w_all)
    randomise_bridges(loss, g)
    parts = loss(p_s, p_t, rois, s_cls, s_reg, t_out.cls_score, t_out.bbox_pred,
                 heads['student'], heads['teacher'])
    assert set(parts) == set(TERMS)

    # independent float64 computation
    st_feats = [ref_bridge(b, f) for b, f in zip(loss.s2t, p_s)]
    ts_feats = [ref_bridge(b, f) for b, f in zip(loss.t2s, p_t[:4])]
    assert len(ts_feats) == 4  # B_t->s only where the RoI head reads
    rois64 = rois.double()
    t = heads['teacher'](tuple(f.double() for f in p_t), rois64)
    st = heads['teacher'](st_feats, rois64)
    ts = heads['student'](ts_feats, rois64)
    paths = dict(s=(s_cls, s_reg), st=(st.cls_score, st.bbox_pred),
                 ts=(ts.cls_score, ts.bbox_pred))
    expected = {'app': w_all * w_app * sum(ref_mse(a, b) for a, b in zip(st_feats, p_t))}
    for name, (z, delta) in paths.items():
        expected[f'kl_{name}'] = w_all * w_kl * ref_softmax_kl(z, t.cls_score, T)
        expected[f'reg_{name}'] = w_all * w_reg * ref_mse(delta, t.bbox_pred)
    for key in TERMS:
        assert expected[key] > 0
        torch.testing.assert_close(parts[key].double(), expected[key], rtol=1e-4, atol=1e-7)

    loss.return_parts = False
    total = loss(p_s, p_t, rois, s_cls, s_reg, t_out.cls_score, t_out.bbox_pred,
                 heads['student'], heads['teacher'])
    torch.testing.assert_close(total.double(), sum(expected.values()), rtol=1e-4, atol=1e-7)


def test_roi_student_outputs_equal_to_the_teacher_give_zero_s_terms():
    g, heads, rois, p_s, p_t, _, _, _ = roi_case(seed=1)
    head = heads['teacher']
    loss = FCFDRoILoss(in_channels=C)
    out = head(p_t, rois)
    parts = loss(p_s, p_t, rois, out.cls_score, out.bbox_pred, out.cls_score,
                 out.bbox_pred, head, head)
    assert parts['kl_s'].abs() < 1e-6 and parts['reg_s'] == 0
    assert parts['kl_st'] > 0 and parts['kl_ts'] > 0


def mmdet_roi_head(seed: int, frozen: bool):
    """A small real StandardRoIHead (SingleRoIExtractor on 4 levels + Shared2FCBBoxHead)."""
    init_default_scope('mmdet')
    torch.manual_seed(seed)
    head = MMDET_MODELS.build(dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=3, sampling_ratio=0),
            out_channels=C, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(type='Shared2FCBBoxHead', in_channels=C, fc_out_channels=16,
                       roi_feat_size=3, num_classes=K)))
    head.init_weights()
    if frozen:
        head.eval().requires_grad_(False)

    def forward(x, rois):
        return SimpleNamespace(**head._bbox_forward(x, rois))

    return head, forward


def real_roi_case(seed=0, small_rois=False):
    g = torch.Generator().manual_seed(seed)
    s_head, s_fwd = mmdet_roi_head(seed, frozen=False)
    t_head, t_fwd = mmdet_roi_head(seed + 100, frozen=True)
    n = 6
    xy = torch.rand(n, 2, generator=g) * 20
    wh = torch.full((n, 2), 6.) if small_rois else torch.rand(n, 2, generator=g) * 50 + 4
    rois = torch.cat([torch.tensor([0., 0, 0, 1, 1, 1])[:, None], xy, xy + wh], 1)
    p_s = tuple(f.requires_grad_() for f in feats(g))
    p_t = feats(g)
    s_out = s_fwd(p_s, rois)  # pass 1: the student's own pass
    with torch.no_grad():
        t_out = t_fwd(p_t, rois)
    loss = FCFDRoILoss(in_channels=C)
    parts = loss(p_s, p_t, rois, s_out.cls_score, s_out.bbox_pred, t_out.cls_score,
                 t_out.bbox_pred, s_fwd, t_fwd)
    return loss, parts, p_s, s_head, t_head


def grads_of(module):
    return [p.grad for p in module.parameters()]


def test_roi_every_bridge_gets_a_gradient_even_with_unused_levels():
    """DDP without find_unused_parameters: every loss parameter needs a gradient every
    step, also when all RoIs map to one FPN level."""
    loss, parts, p_s, s_head, t_head = real_roi_case(small_rois=True)
    sum(parts.values()).backward()
    names = [n for n, p in loss.named_parameters() if p.grad is None]
    assert not names, f'no gradient for {names}'
    assert len(loss.s2t) == 5 and len(loss.t2s) == 4
    assert all(p.grad is None for p in t_head.parameters())
    # all 6 RoIs are small -> the RoI extractor used level 0 only; the other bridges
    # still got (zero) gradients through mmdet's empty-level fallback
    assert loss.t2s[0].conv.weight.grad.abs().sum() > 0
    assert loss.t2s[2].conv.weight.grad.abs().sum() == 0


@pytest.mark.parametrize('terms, reached, untouched', [
    # student-through-teacher: bridge s->t and the student features, not the student head
    (('kl_st', 'reg_st'), ('s2t', 'student_feats'), ('t2s', 'student_head')),
    # teacher-through-student: bridge t->s and the student head, not the student features
    (('kl_ts', 'reg_ts'), ('t2s', 'student_head'), ('s2t', 'student_feats')),
    (('app', ), ('s2t', 'student_feats'), ('t2s', 'student_head')),
    (('kl_s', 'reg_s'), ('student_head', 'student_feats'), ('s2t', 't2s')),
])
def test_roi_gradient_routing_of_each_term(terms, reached, untouched):
    loss, parts, p_s, s_head, t_head = real_roi_case(seed=2)
    sum(parts[t] for t in terms).backward()
    groups = {
        's2t': [p.grad for p in loss.s2t[:4].parameters()],
        't2s': grads_of(loss.t2s),
        'student_head': grads_of(s_head.bbox_head),
        'student_feats': [f.grad for f in p_s[:4]],
    }
    for name in reached:
        assert any(gr is not None and gr.abs().sum() > 0 for gr in groups[name]), name
    for name in untouched:
        assert all(gr is None or gr.abs().sum() == 0 for gr in groups[name]), name
    assert all(p.grad is None for p in t_head.parameters())


# ---------------------------------------------------------------- dense
def dense_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    heads = {side: fake_dense_head(torch.randn(A * K, C, generator=g),
                                   0.3 * torch.randn(A * 4, C, generator=g))
             for side in ('student', 'teacher')}
    p_s, p_t = feats(g), feats(g, scale=2.0)
    t_cls, t_reg = heads['teacher'](p_t)
    s_cls = [torch.randn(c.shape, generator=g) for c in t_cls]  # pass 1, reused as given
    s_reg = [torch.randn(r.shape, generator=g) for r in t_reg]
    return g, heads, p_s, p_t, s_cls, s_reg, t_cls, t_reg


def ref_dense_terms(cls, reg, t_cls, t_reg, T, masks=None):
    kl, mse = 0, 0
    for level, (z, d, zt, dt) in enumerate(zip(cls, reg, t_cls, t_reg)):
        kl_map = ref_sigmoid_kl(z, zt, T)
        se = (d.double() - dt.double())**2
        if masks is None:
            kl, mse = kl + kl_map.mean(), mse + se.mean()
            continue
        m = masks[level].double()  # [B, HW]
        kept = m.sum()
        if kept == 0:
            continue
        kl = kl + (kl_map.flatten(2) * m[:, None]).sum() / (kept * z.size(1))
        mse = mse + (se.flatten(2) * m[:, None]).sum() / (kept * d.size(1))
    return kl, mse


@pytest.mark.parametrize('masked', [False, True])
def test_dense_golden_values(masked):
    g, heads, p_s, p_t, s_cls, s_reg, t_cls, t_reg = dense_case()
    T, w_kl, w_reg = 1.5, 4.0, 0.5
    score_thr = 0.5 if masked else None
    loss = FCFDDenseLoss(in_channels=C, temperature=T, kl_weight=w_kl, reg_weight=w_reg,
                         score_thr=score_thr)
    randomise_bridges(loss, g)
    keep = [torch.rand(2, h * w, generator=g) > 0.3 for h, w in SIZES] if masked else None
    parts = loss(p_s, p_t, s_cls, s_reg, t_cls, t_reg, heads['student'], heads['teacher'],
                 mask=keep)

    st_feats = [ref_bridge(b, f) for b, f in zip(loss.s2t, p_s)]
    ts_feats = [ref_bridge(b, f) for b, f in zip(loss.t2s, p_t)]
    assert len(ts_feats) == 5  # the dense head reads every level
    t64 = heads['teacher']([f.double() for f in p_t])
    masks = None
    if masked:  # keep_mask AND teacher's max class probability over anchors >= 0.5
        masks = [k & (torch.sigmoid(z.double()).flatten(2).amax(1) >= score_thr)
                 for k, z in zip(keep, t64[0])]
        n_kept = sum(int(m.sum()) for m in masks)
        assert 0 < n_kept < sum(m.numel() for m in masks)
    paths = dict(s=(s_cls, s_reg), st=heads['teacher'](st_feats),
                 ts=heads['student'](ts_feats))
    expected = {'app': sum(ref_mse(a, b) for a, b in zip(st_feats, p_t))}
    for name, (cls, reg) in paths.items():
        kl, mse = ref_dense_terms(cls, reg, *t64, T, masks)
        expected[f'kl_{name}'], expected[f'reg_{name}'] = w_kl * kl, w_reg * mse
    for key in TERMS:
        assert expected[key] > 0
        torch.testing.assert_close(parts[key].double(), expected[key], rtol=1e-4, atol=1e-7)


def test_dense_all_true_mask_equals_no_mask_and_empty_mask_is_zero():
    _, heads, _, _, s_cls, s_reg, t_cls, t_reg = dense_case(seed=3)
    plain = fcfd_dense_terms(s_cls, s_reg, t_cls, t_reg, 2.0)
    ones = [torch.ones(2, h * w, dtype=torch.bool) for h, w in SIZES]
    for a, b in zip(plain, fcfd_dense_terms(s_cls, s_reg, t_cls, t_reg, 2.0, ones)):
        torch.testing.assert_close(a, b)
    # the unmasked path is mmkd's sigmoid KD, level by level
    torch.testing.assert_close(plain[0], sum(kd_loss(s, t, 2.0, mode='sigmoid')
                                             for s, t in zip(s_cls, t_cls)))
    s_cls = [c.clone().requires_grad_() for c in s_cls]
    zeros = [torch.zeros(2, h * w, dtype=torch.bool) for h, w in SIZES]
    kl, reg = fcfd_dense_terms(s_cls, s_reg, t_cls, t_reg, 1.0, zeros)
    assert kl == 0 and reg == 0
    kl.backward()  # still in the graph, no NaN
    assert all(torch.isfinite(c.grad).all() for c in s_cls)


def test_dense_every_bridge_gets_a_gradient():
    _, heads, p_s, p_t, s_cls, s_reg, t_cls, t_reg = dense_case(seed=4)
    loss = FCFDDenseLoss(in_channels=C)
    parts = loss(p_s, p_t, s_cls, s_reg, t_cls, t_reg, heads['student'], heads['teacher'])
    sum(parts.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in loss.named_parameters() if n.endswith('conv.weight'))
    assert all(p.grad is not None for p in loss.parameters())


def test_dense_app_levels_restrict_only_the_appearance_term():
    """app_levels=(0, 1, 2): the appearance MSE of those levels (float64 reference), the
    function terms as with every level, and every bridge still gets a gradient (the
    st path reads every bridged level); bad indices are refused."""
    g, heads, p_s, p_t, s_cls, s_reg, t_cls, t_reg = dense_case(seed=5)
    full = FCFDDenseLoss(in_channels=C)
    randomise_bridges(full, g)
    part = FCFDDenseLoss(in_channels=C, app_levels=(0, 1, 2))
    part.load_state_dict(full.state_dict())
    args = (p_s, p_t, s_cls, s_reg, t_cls, t_reg, heads['student'], heads['teacher'])
    parts_full, parts = full(*args), part(*args)
    st_feats = [ref_bridge(b, f) for b, f in zip(part.s2t, p_s)]
    expected = sum(ref_mse(st_feats[i], p_t[i]) for i in (0, 1, 2))
    assert 0 < expected < sum(ref_mse(a, b) for a, b in zip(st_feats, p_t))
    torch.testing.assert_close(parts['app'].double(), expected, rtol=1e-4, atol=1e-7)
    for key in TERMS:
        if key != 'app':
            torch.testing.assert_close(parts[key], parts_full[key])
    sum(parts.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in part.named_parameters() if n.endswith('conv.weight'))
    for bad in [(), (0, 5), (1, 1)]:
        with pytest.raises(ValueError, match='app_levels'):
            FCFDDenseLoss(in_channels=C, app_levels=bad)


def test_bad_inputs_are_reported():
    g, heads, rois, p_s, p_t, s_cls, s_reg, t_out = roi_case()
    loss = FCFDRoILoss(in_channels=C)
    with pytest.raises(ValueError, match=r'student_feats must be the 5 FPN levels.*got 4'):
        loss(p_s[:4], p_t, rois, s_cls, s_reg, t_out.cls_score, t_out.bbox_pred,
             heads['student'], heads['teacher'])
    with pytest.raises(ValueError, match=r'rois must be \[R, 5\]'):
        loss(p_s, p_t, rois[:, 1:], s_cls, s_reg, t_out.cls_score, t_out.bbox_pred,
             heads['student'], heads['teacher'])
    with pytest.raises(ValueError, match='ConvBNConnector expects 8 input channels'):
        FCFDRoILoss(in_channels=8)(p_s, p_t, rois, s_cls, s_reg, t_out.cls_score,
                                   t_out.bbox_pred, heads['student'], heads['teacher'])
    with pytest.raises(ValueError, match='t->s bridges'):
        FCFDRoILoss(in_channels=C, num_levels=3, num_roi_levels=4)
    teacher = SimpleNamespace(
        roi_head=SimpleNamespace(bbox_roi_extractor=SimpleNamespace(num_inputs=3)),
        neck=SimpleNamespace(out_channels=C))
    with pytest.raises(ValueError, match='set num_roi_levels=3'):
        loss.init_from_teacher(teacher)
    teacher.roi_head.bbox_roi_extractor.num_inputs = 4
    loss.init_from_teacher(teacher)
    teacher.neck.out_channels = 256
    with pytest.raises(ValueError, match='teacher FPN has 256 channels'):
        loss.init_from_teacher(teacher)


def test_bridge_batchnorm_on_a_single_value_per_channel_says_what_to_change():
    """One image per process and a 1x1 FPN level: BatchNorm cannot train on it; the
    error names the batch size to raise (in eval mode the same input is fine)."""
    from mmkd.models.connectors import ConvBNConnector
    bridge = ConvBNConnector(8, 4)
    with pytest.raises(ValueError, match=r'\[1, 8, 1, 1\].*train_dataloader.batch_size'):
        bridge(torch.randn(1, 8, 1, 1))
    assert bridge(torch.randn(2, 8, 1, 1)).shape == (2, 4, 1, 1)
    assert bridge(torch.randn(1, 8, 2, 1)).shape == (1, 4, 2, 1)
    assert bridge.eval()(torch.randn(1, 8, 1, 1)).shape == (1, 4, 1, 1)


# ---------------------------------------------------------------- one joint RoI extraction
class _Detector(nn.Module):
    """What RoIHeadRecorder needs of a detector: a ``roi_head``."""

    def __init__(self, roi_head):
        super().__init__()
        self.roi_head = roi_head


def spread_rois(g, n=40, batch=2, dtype=torch.float64):
    """RoIs of 2..300 px (all four levels of finest_scale 56), some partly outside the
    128-px images, a few degenerate."""
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 150 - 20
    wh = torch.rand(n, 2, generator=g, dtype=dtype) ** 2 * 300 + 2
    wh[:2] = 0
    return torch.cat([torch.randint(0, batch, (n, 1), generator=g).to(dtype), xy, xy + wh], 1)


def old_roi_forward(loss, p_s, p_t, rois, s_cls, s_reg, t_cls, t_reg, s_fwd, t_fwd):
    """FCFDRoILoss.forward before the joint extraction (reference copy): two separate
    RoI-head passes through mmdet's extractor and mmcv's RoIAlign."""
    to_teacher, to_student = loss._bridge(p_s, p_t)
    app = fcfd_appearance_loss(to_teacher, p_t, None)
    st = t_fwd(to_teacher, rois)
    ts = s_fwd(to_student, rois)
    T = loss.temperature
    terms = {
        's': fcfd_roi_terms(s_cls, s_reg, t_cls, t_reg, T),
        'st': fcfd_roi_terms(st.cls_score, st.bbox_pred, t_cls, t_reg, T),
        'ts': fcfd_roi_terms(ts.cls_score, ts.bbox_pred, t_cls, t_reg, T),
    }
    return loss._collect(app, terms)


@pytest.mark.parametrize('small_rois', [False, True])
def test_roi_joint_extraction_equals_the_two_passes_float64(small_rois, monkeypatch):
    """The loss with RoIHeadRecorder forwards (one sparse RoI extraction for both cross
    passes) against the old two-pass computation: same terms, same gradients for the
    student features, the bridges and the student head (float64, real mmdet heads)."""
    g = torch.Generator().manual_seed(11)
    s_head, _ = mmdet_roi_head(0, frozen=False)
    t_head, _ = mmdet_roi_head(100, frozen=True)
    s_rec, t_rec = RoIHeadRecorder(_Detector(s_head)), RoIHeadRecorder(_Detector(t_head))
    s_head.double(), t_head.double()
    loss = FCFDRoILoss(in_channels=C, temperature=2.0, app_weight=0.5, kl_weight=1.5,
                       reg_weight=0.7).double()
    randomise_bridges(loss, g)
    loss.double()
    rois = spread_rois(g)
    if small_rois:  # every RoI on level 0: the other levels get zero gradients
        rois[:, 3:] = rois[:, 1:3] + 6
    sizes = [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    p_s = [torch.randn(2, C, h, w, generator=g, dtype=torch.float64).requires_grad_()
           for h, w in sizes]
    p_t = [2 * torch.randn(2, C, h, w, generator=g, dtype=torch.float64) for h, w in sizes]
    with torch.no_grad():
        t_out = t_rec.forward_rois(p_t, rois)
    s_out = s_rec.forward_rois(p_s, rois)
    args = (p_s, p_t, rois, s_out.cls_score, s_out.bbox_pred, t_out.cls_score,
            t_out.bbox_pred, s_rec.forward_rois, t_rec.forward_rois)
    params = p_s + list(loss.parameters()) + list(s_head.parameters())
    calls = []
    joint = roi_recorder.extract_rois_jointly
    monkeypatch.setattr(roi_recorder, 'extract_rois_jointly',
                        lambda *a, **k: calls.append(1) or joint(*a, **k))

    new = loss(*args)
    assert calls == [1]  # one extraction for both cross passes
    new_grads = torch.autograd.grad(sum(new.values()), params, allow_unused=True,
                                    retain_graph=True)
    old = old_roi_forward(loss, *args)
    old_grads = torch.autograd.grad(sum(old.values()), params, allow_unused=True)
    for key in TERMS:
        assert old[key] > 0
        torch.testing.assert_close(new[key], old[key], rtol=1e-12, atol=1e-14)
    for a, b in zip(new_grads, old_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    # every bridge gets a gradient (zero on levels no RoI reads, as mmdet's extractor)
    names = [n for n, _ in loss.named_parameters()]
    bridge = dict(zip(names, new_grads[len(p_s):len(p_s) + len(names)]))
    assert all(gr is not None for gr in bridge.values())
    assert bridge['t2s.0.conv.weight'].abs().sum() > 0
    assert (bridge['t2s.2.conv.weight'].abs().sum() == 0) == small_rois
    assert all(p.grad is None for p in t_head.parameters())


@pytest.mark.parametrize('sparse', [True, False])
def test_joint_extraction_equals_mmdet_extractor_per_set(sparse):
    """extract_rois_jointly (sparse product, or one mmcv call per level on concatenated
    channels as on CUDA) = mmdet's SingleRoIExtractor on each feature set, values and
    input gradients, float64."""
    g = torch.Generator().manual_seed(3)
    head, _ = mmdet_roi_head(0, frozen=False)
    extractor = head.bbox_roi_extractor
    rois = spread_rois(g, n=60)
    sets = [[torch.randn(2, c, h, w, generator=g, dtype=torch.float64).requires_grad_()
             for h, w in ((32, 32), (16, 16), (8, 8), (4, 4))] for c in (C, 3)]
    outs = extract_rois_jointly(extractor, sets, rois, sparse=sparse)
    extractor.out_channels = 3
    refs = [extractor(sets[1], rois)]
    extractor.out_channels = C
    refs.insert(0, extractor(sets[0], rois))
    weights = [torch.randn(r.shape, generator=g, dtype=torch.float64) for r in refs]
    leaves = sets[0] + sets[1]
    g_new = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), leaves)
    g_ref = torch.autograd.grad(sum((r * w).sum() for r, w in zip(refs, weights)), leaves)
    for a, b in zip(outs + list(g_new), refs + list(g_ref)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_joint_forward_falls_back_for_other_callables():
    """Plain callables (or heads that extract differently) get one call each."""
    g, heads, rois, p_s, p_t, *_ = roi_case()
    outs = forward_rois_jointly([heads['teacher'], heads['student']], [p_s, p_t], rois)
    torch.testing.assert_close(outs[0].cls_score, heads['teacher'](p_s, rois).cls_score)
    torch.testing.assert_close(outs[1].bbox_pred, heads['student'](p_t, rois).bbox_pred)


# ---------------------------------------------------------------- dense: all paths at once
def old_dense_terms(cls_scores, bbox_preds, t_cls_scores, t_reg_preds, T, masks=None):
    """fcfd_dense_terms before the paths and levels were computed together (reference
    copy, level by level, float64 kept instead of the old cast to fp32)."""
    kl, reg = 0., 0.
    for level, (s_cls, s_reg) in enumerate(zip(cls_scores, bbox_preds)):
        t_cls, t_reg = t_cls_scores[level].detach(), t_reg_preds[level].detach()
        s, t = s_cls / T, t_cls / T
        p_t = torch.sigmoid(t)
        kl_map = (p_t * (F.logsigmoid(t) - F.logsigmoid(s)) +
                  (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))) * T**2
        se = (s_reg - t_reg).pow(2)
        if masks is None:
            kl, reg = kl + kl_map.mean(), reg + se.mean()
            continue
        mask = masks[level].double()
        for values, name in ((kl_map, 'kl'), (se, 'reg')):
            mean = (values.flatten(2).sum(1) * mask).sum() / \
                (mask.sum() * values.size(1)).clamp(min=1.0)
            if name == 'kl':
                kl = kl + mean
            else:
                reg = reg + mean
    return kl, reg


@pytest.mark.parametrize('masked', [None, 'random', 'one_level_empty'])
def test_dense_paths_at_once_equal_the_level_by_level_terms_float64(masked):
    """fcfd_dense_paths (three paths, all levels, one computation) against the old
    per-path, per-level computation: the same KL and MSE values and the same gradients
    for every path's logits and deltas (float64, 1e-12)."""
    g = torch.Generator().manual_seed(21)
    t_cls = [3 * torch.randn(2, A * K, h, w, generator=g, dtype=torch.float64)
             for h, w in SIZES]
    t_reg = [torch.randn(2, A * 4, h, w, generator=g, dtype=torch.float64) for h, w in SIZES]
    paths = [([3 * torch.randn(c.shape, generator=g, dtype=torch.float64).requires_grad_()
               for c in t_cls],
              [torch.randn(r.shape, generator=g, dtype=torch.float64).requires_grad_()
               for r in t_reg]) for _ in range(3)]
    masks = None
    if masked:
        masks = [torch.rand(2, h * w, generator=g) > 0.4 for h, w in SIZES]
        if masked == 'one_level_empty':
            masks[1][:] = False
    T = 1.7
    leaves = [x for cls, reg in paths for x in cls + reg]
    new = fcfd_dense_paths(paths, t_cls, t_reg, T, masks)
    new_total = sum(1.3 * kl + 0.7 * reg for kl, reg in new)
    new_grads = torch.autograd.grad(new_total, leaves)
    old = [old_dense_terms(cls, reg, t_cls, t_reg, T, masks) for cls, reg in paths]
    old_total = sum(1.3 * kl + 0.7 * reg for kl, reg in old)
    old_grads = torch.autograd.grad(old_total, leaves)
    for (kl, reg), (kl_ref, reg_ref) in zip(new, old):
        assert kl_ref > 0 and reg_ref > 0
        torch.testing.assert_close(kl, kl_ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(reg, reg_ref, rtol=1e-12, atol=0)
    for a, b in zip(new_grads, old_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-15)
    if masked == 'one_level_empty':  # level 1 adds 0 and gets zero gradients, not NaN
        level_1 = [gr for i, gr in enumerate(new_grads) if i % len(SIZES) == 1]
        assert len(level_1) == 6 and all(gr.abs().sum() == 0 for gr in level_1)


def test_joint_forward_goes_through_a_wrapper_of_forward_rois(monkeypatch):
    """A wrapper exposing the recorder's method (as the low-precision teacher's fp32
    output cast does) still gets the joint extraction, and its output handling applies."""

    class Twice:
        def __init__(self, fn):
            self.fn = fn

        def __call__(self, *args):
            out = self.fn(*args)
            out.cls_score = 2 * out.cls_score
            return out

        def __getattr__(self, name):
            return getattr(self.fn, name)

    g = torch.Generator().manual_seed(5)
    s_head, _ = mmdet_roi_head(0, frozen=False)
    t_head, _ = mmdet_roi_head(100, frozen=True)
    s_rec, t_rec = RoIHeadRecorder(_Detector(s_head)), RoIHeadRecorder(_Detector(t_head))
    rois = spread_rois(g, dtype=torch.float32)
    sets = [[torch.randn(2, C, h, w, generator=g) for h, w in ((32, 32), (16, 16), (8, 8),
                                                             (4, 4))] for _ in range(2)]
    calls = []
    joint = roi_recorder.extract_rois_jointly
    monkeypatch.setattr(roi_recorder, 'extract_rois_jointly',
                        lambda *a, **k: calls.append(1) or joint(*a, **k))
    st, ts = forward_rois_jointly([Twice(t_rec.forward_rois), s_rec.forward_rois], sets, rois)
    assert calls == [1]
    torch.testing.assert_close(st.cls_score, 2 * t_rec.forward_rois(sets[0], rois).cls_score)
    torch.testing.assert_close(ts.bbox_pred, s_rec.forward_rois(sets[1], rois).bbox_pred)
    assert st.embedding is not None and st.embedding.shape[0] == rois.shape[0]


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_sparse_roi_align_takes_low_precision_features(dtype):
    """bf16 / fp16 maps (CPU autocast, a low-precision run) are pooled in fp32, as mmcv's
    RoIAlign under mmkd's fp32 wrapper: the result is the fp32 one, in the input dtype,
    and so is the gradient."""
    g = torch.Generator().manual_seed(8)
    head, _ = mmdet_roi_head(0, frozen=False)
    rois = spread_rois(g, n=20, dtype=torch.float32)
    maps = [torch.randn(2, C, h, w, generator=g) for h, w in ((32, 32), (16, 16), (8, 8),
                                                            (4, 4))]
    low = [m.to(dtype).requires_grad_() for m in maps]
    # as mmdet's extractor, the RoIs are first cast to the features' dtype
    ref = extract_rois_jointly(head.bbox_roi_extractor, [[m.to(dtype).float() for m in maps]],
                               rois.to(dtype).float())[0]
    # bf16 also inside a CPU autocast region (fp16 maps do not mix with one)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = extract_rois_jointly(head.bbox_roi_extractor, [low], rois)[0]
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref.to(dtype).float())
    out.float().sum().backward()
    assert all(m.grad.dtype == dtype for m in low) and low[0].grad.abs().sum() > 0
