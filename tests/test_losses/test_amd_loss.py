"""Tests of the AMD loss (spec: reference/losses.md, section 4)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmkd.models.losses.amd_loss import AMDLoss, amd_loss
from mmkd.registry import MODELS


# ------------------------------------------------------------------------------------
# Independent float64 reference, written from the spec (no padding support).
# ------------------------------------------------------------------------------------
def _ref_lpn(att, s, m, eps):
    """att: [B, K] raw attention (float64) -> normalised (L, P, N), each [B, K]."""
    a = att / (att.norm(dim=1, keepdim=True) + 1e-6)
    pos = s * torch.cos(m * torch.acos(a.clamp(-1 + eps, 1 - eps)))
    neg = s * (1 - a)
    logit = pos - torch.log(torch.exp(pos) + torch.exp(neg))
    return [x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) for x in (logit, pos, neg)]


def _ref_part(att_s, att_t, s, m, eps):
    """att_*: [B, h, w] -> spec loss: mean of the three element-mean MSEs over [B, hw]."""
    ns = _ref_lpn(att_s.flatten(1), s, m, eps)
    nt = _ref_lpn(att_t.flatten(1), s, m, eps)
    return sum(((x - y)**2).mean() for x, y in zip(ns, nt)) / 3


def ref_amd(fs, ft, s=64.0, m=1.35, local_weight=0.0, eps=1e-7):
    fs, ft = fs.double(), ft.double()
    att_s = (fs**2).sum(1)
    att_t = (ft**2).sum(1)
    if att_s.shape[-2:] != att_t.shape[-2:]:
        att_s = F.interpolate(att_s[:, None], size=att_t.shape[-2:], mode='bilinear',
                              align_corners=False)[:, 0]
    glob = _ref_part(att_s, att_t, s, m, eps)
    if local_weight == 0:
        return glob
    h, w = att_t.shape[-2:]
    quads = []
    for rs in (slice(0, h // 2), slice(h // 2, h)):
        for cs in (slice(0, w // 2), slice(w // 2, w)):
            quads.append(_ref_part(att_s[:, rs, cs], att_t[:, rs, cs], s, m, eps))
    return local_weight * sum(quads) / 4 + (1 - local_weight) * glob


def _feats(seed, b=2, cs=8, ct=16, h=7, w=9, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    fs = torch.randn(b, cs, h, w, generator=g)
    ft = torch.randn(b, ct, h, w, generator=g)
    # a few strong "object" positions so the angular part is exercised beyond a ~ 1/sqrt(HW)
    fs[:, :, 1:3, 2:4] *= 3.0
    ft[:, :, 1:4, 2:5] *= 4.0
    return fs.to(dtype), ft.to(dtype)


def _pad(x, ph, pw):
    return F.pad(x, (0, pw, 0, ph))


# ------------------------------------------------------------------------------------
# Golden values
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize('local_weight', [0.0, 0.2, 1.0])
@pytest.mark.parametrize('size', [(7, 9), (8, 6)])
def test_golden(local_weight, size):
    fs, ft = _feats(0, h=size[0], w=size[1])
    expected = ref_amd(fs, ft, local_weight=local_weight)
    got = amd_loss(fs, ft, local_weight=local_weight)
    assert got.dtype == torch.float32 and got.dim() == 0
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-9)
    mod = AMDLoss(local_weight=local_weight, loss_weight=2.5)
    torch.testing.assert_close(mod(fs, ft).double(), 2.5 * expected, rtol=1e-5, atol=1e-9)


def test_golden_other_hyper_parameters_and_resize():
    fs, ft = _feats(1, b=3, cs=4, ct=32, h=6, w=10)
    expected = ref_amd(fs, ft, s=16.0, m=1.1, local_weight=0.3, eps=1e-5)
    got = amd_loss(fs, ft, scale=16.0, margin=1.1, local_weight=0.3, eps=1e-5)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-9)

    small = F.avg_pool2d(fs, 2)  # student map [3, 4, 3, 5], teacher [3, 32, 6, 10]
    expected = ref_amd(small, ft, local_weight=0.2)
    got = AMDLoss(local_weight=0.2, resize=True)(small, ft)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-9)


def test_registry_build():
    loss = MODELS.build(dict(type='AMDLoss', local_weight=0.2, loss_weight=3.0))
    assert isinstance(loss, AMDLoss)
    fs, ft = _feats(2)
    torch.testing.assert_close(loss(fs, ft), 3.0 * amd_loss(fs, ft, local_weight=0.2))


# ------------------------------------------------------------------------------------
# Numerics
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize('local_weight', [0.0, 0.2])
def test_fp16_large_activations(local_weight):
    fs, ft = _feats(3, cs=32, ct=64)
    fs = (fs * 1e3).clamp(-6e4, 6e4).half().requires_grad_()
    ft = (ft * 1e3).clamp(-6e4, 6e4).half()
    assert torch.isinf((fs.detach()**2).sum(1)).any()  # sum F^2 overflows in fp16
    loss = amd_loss(fs, ft, local_weight=local_weight)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # The loss is scale-invariant in F, so its gradient scales as 1/|F| (~1e-9 here, below
    # fp16's range): scale the loss as AMP's GradScaler does before backward.
    (loss * 2.0**16).backward()
    assert fs.grad.dtype == torch.float16
    assert torch.isfinite(fs.grad).all() and fs.grad.abs().sum() > 0
    # same value as the fp32 computation on the same (fp16-representable) numbers
    torch.testing.assert_close(loss, amd_loss(fs.detach().float(), ft.float(),
                                              local_weight=local_weight))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_under_bf16_autocast(dtype):
    fs, ft = _feats(4, cs=32, ct=64)
    fs = (fs * 1e3).to(dtype).requires_grad_()
    ft = (ft * 1e3).to(dtype)
    crit = AMDLoss(local_weight=0.2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = crit(fs, ft)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(fs.grad).all() and fs.grad.abs().sum() > 0
    # autocast does not change the (fp32) computation
    torch.testing.assert_close(loss, crit(fs.detach(), ft))


def test_zero_features_and_fully_padded_image_are_finite():
    fs, ft = _feats(5)
    fs = fs.clone()
    fs[0] = 0  # an all-zero student map
    ft[:, :, :4, :5] = 0  # an all-zero teacher quadrant
    fs.requires_grad_()
    mask = torch.ones(2, 7, 9)
    mask[1] = 0  # an image without any valid position
    for lw in (0.0, 0.2):
        for vm in (None, mask):
            fs.grad = None
            loss = amd_loss(fs, ft, vm, local_weight=lw)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(fs.grad).all()
    # the fully padded image is left out of the batch mean
    torch.testing.assert_close(amd_loss(fs, ft, mask), amd_loss(fs[:1], ft[:1]))
    # nothing valid at all: 0, still connected to the graph
    loss = amd_loss(fs, ft, torch.zeros(2, 7, 9))
    assert loss.item() == 0.0 and loss.requires_grad


# ------------------------------------------------------------------------------------
# Padding mask
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize('local_weight', [0.0, 0.2, 1.0])
def test_padding_invariance_single_image(local_weight):
    fs, ft = _feats(6, b=1, h=7, w=9)
    alone = amd_loss(fs, ft, local_weight=local_weight)
    ps, pt = _pad(fs, 3, 5), _pad(ft, 3, 5)  # [1, C, 10, 14]
    mask = torch.zeros(1, 1, 10, 14)
    mask[..., :7, :9] = 1
    for vm in (mask, mask[:, 0], mask.bool()):
        padded = amd_loss(ps, pt, vm, local_weight=local_weight)
        torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-7)
    # a mask at image resolution (stride 4) gives the same feature-level mask
    img_mask = torch.zeros(1, 40, 56)
    img_mask[:, :28, :36] = 1
    torch.testing.assert_close(amd_loss(ps, pt, img_mask, local_weight=local_weight),
                               alone, rtol=1e-5, atol=1e-7)
    # without the mask the padding changes the result
    unmasked = amd_loss(ps, pt, local_weight=local_weight)
    assert not torch.allclose(unmasked, alone, rtol=1e-3)


@pytest.mark.parametrize('local_weight', [0.0, 0.2])
def test_padding_invariance_two_image_batch(local_weight):
    big_s, big_t = _feats(7, b=1, h=10, w=14)
    sm_s, sm_t = _feats(8, b=1, h=7, w=9)
    fs = torch.cat([big_s, _pad(sm_s, 3, 5)])
    ft = torch.cat([big_t, _pad(sm_t, 3, 5)])
    mask = torch.ones(2, 1, 10, 14)
    mask[1, :, 7:] = 0
    mask[1, :, :, 9:] = 0
    expected = (amd_loss(big_s, big_t, local_weight=local_weight)
                + amd_loss(sm_s, sm_t, local_weight=local_weight)) / 2
    got = amd_loss(fs, ft, mask, local_weight=local_weight)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # the golden reference agrees for the unpadded image
    torch.testing.assert_close(amd_loss(sm_s, sm_t, local_weight=local_weight).double(),
                               ref_amd(sm_s, sm_t, local_weight=local_weight),
                               rtol=1e-5, atol=1e-9)
    # the mask matters exactly where there is padding
    assert not torch.allclose(amd_loss(fs, ft, local_weight=local_weight), expected,
                              rtol=1e-3)
    torch.testing.assert_close(amd_loss(fs, ft, torch.ones(2, 10, 14),
                                        local_weight=local_weight),
                               amd_loss(fs, ft, local_weight=local_weight))
    # the loss is blind to padding content under the mask
    noisy_s, noisy_t = fs.clone(), ft.clone()
    noisy_s[1, :, 7:] = 5.0
    noisy_t[1, :, :, 9:] = -3.0
    torch.testing.assert_close(amd_loss(noisy_s, noisy_t, mask, local_weight=local_weight),
                               got)


def test_padding_with_resize():
    fs, ft = _feats(9, b=1, h=8, w=10)
    small = F.avg_pool2d(fs, 2)  # [1, C, 4, 5]
    alone = amd_loss(small, ft, resize=True)
    # pad features by whole cells at both resolutions, mask at teacher resolution
    mask = torch.zeros(1, 12, 14)
    mask[:, :8, :10] = 1
    padded = amd_loss(_pad(small, 2, 2), _pad(ft, 4, 4), mask, resize=True)
    assert torch.isfinite(padded)
    assert not torch.allclose(amd_loss(_pad(small, 2, 2), _pad(ft, 4, 4), resize=True),
                              padded)
    assert torch.isfinite(alone)


# ------------------------------------------------------------------------------------
# Shapes, gradients, zero loss, errors
# ------------------------------------------------------------------------------------
def test_size_mismatch_raises_and_resize_works():
    fs, ft = _feats(10, h=8, w=8)
    small = fs[:, :, :4, :4]
    with pytest.raises(ValueError, match='resize=True'):
        AMDLoss()(small, ft)
    small = small.clone().requires_grad_()
    loss = AMDLoss(resize=True, local_weight=0.2)(small, ft)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.isfinite(small.grad).all() and small.grad.abs().sum() > 0


def test_gradient_reaches_student_only():
    fs, ft = _feats(11)
    fs.requires_grad_()
    ft.requires_grad_()
    AMDLoss(local_weight=0.2)(fs, ft).backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0
    assert ft.grad is None


@pytest.mark.parametrize('local_weight', [0.0, 0.2])
def test_zero_iff_equal(local_weight):
    fs, ft = _feats(12, cs=16, ct=16)
    crit = AMDLoss(local_weight=local_weight)
    assert crit(fs, fs.clone()).abs() < 1e-10
    # equal attention maps from different channel counts also give 0
    assert crit(fs, torch.cat([fs, torch.zeros_like(fs)], 1)).abs() < 1e-10
    assert crit(fs, ft) > 1e-6
    assert crit(fs, fs * torch.linspace(0.5, 2.0, 9)) > 1e-6


def test_bad_inputs_raise():
    fs, ft = _feats(13)
    with pytest.raises(ValueError, match='4-D'):
        amd_loss(fs[0], ft[0])
    with pytest.raises(ValueError, match='batch'):
        amd_loss(fs, ft[:1])
    with pytest.raises(ValueError, match='valid_mask'):
        amd_loss(fs, ft, torch.ones(3, 7, 9))
    with pytest.raises(ValueError, match='valid_mask'):
        amd_loss(fs, ft, torch.ones(2, 2, 7, 9))
    with pytest.raises(ValueError, match='floating'):
        amd_loss(fs.long(), ft)
    with pytest.raises(ValueError, match='local_weight'):
        AMDLoss(local_weight=1.5)
    with pytest.raises(ValueError, match='scale'):
        AMDLoss(scale=0)
    with pytest.raises(ValueError, match='margin'):
        AMDLoss(margin=-1)
    with pytest.raises(ValueError, match='eps'):
        AMDLoss(eps=0)


def test_reference_sanity():
    """The reference uses the literal log(e^P + e^N); it is finite in float64 at s=64."""
    fs, ft = _feats(14)
    v = ref_amd(fs, ft, local_weight=0.2)
    assert math.isfinite(v.item()) and v > 0


def test_single_position_regions_carry_no_loss_and_no_gradient():
    """A 1×1 map (or a 2×2 map's 1-position quadrants) normalises to constants: the
    loss leaves such regions out instead of returning a spurious value with noise."""
    from mmkd.models.losses import AMDLoss
    torch.manual_seed(0)
    s = (torch.randn(2, 8, 1, 1) * 3).requires_grad_()
    t = torch.randn(2, 8, 1, 1)
    loss = AMDLoss(local_weight=0.2)(s, t)
    loss.backward()
    assert loss.item() == 0.0 and s.grad.abs().max() == 0
    s2 = (torch.randn(1, 8, 2, 2) * 3).requires_grad_()
    only_global = AMDLoss(local_weight=0.0)(s2, torch.randn(1, 8, 2, 2))
    with_local = AMDLoss(local_weight=0.2)(s2, torch.randn(1, 8, 2, 2))
    with_local.backward()
    assert torch.isfinite(s2.grad).all() and s2.grad.abs().max() < 10
    assert torch.isfinite(only_global)
