"""DenseLSHLoss (LSHFM on RetinaNet's cls tower): golden values against an independent
float64 computation (neighbourhoods gathered by slicing, per-location BCE / MSE written out,
per-image mean over kept locations, then mean over images with any), the same loss and
gradient as the unfolded ``lsh_loss`` it replaces, gradients, AMP, the bf16 / tf32 hashing
options, and what the fused convolution path keeps for backward."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmkd.models.losses import DenseLSHLoss, dense_lsh_loss, lsh_loss
from mmkd.models.losses.dense_lsh_loss import unfold_levels
from mmkd.registry import MODELS

C = 4
D = 9 * C
H = 64
SIZES = [(6, 7), (3, 4), (2, 2)]  # three levels, L = 42 + 12 + 4 = 58


def levels(batch=3, seed=0, scale=1.0, relu=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in SIZES:
        x = torch.randn(batch, C, h, w, generator=g) * scale
        out.append(x.clamp(min=0) if relu else x)  # the tower ends with a ReLU
    return out


def keep_masks(batch=3, seed=1, drop_image=1):
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(batch, h * w, generator=g) > 0.3 for h, w in SIZES]
    for m in masks:
        m[drop_image] = False  # an image whose locations are all in the ignore band
    return masks


def neighbourhoods(x):
    """[B, C, H, W] -> [B, H*W, 9C] by slicing a zero-padded copy; column c*9 + dy*3 + dx."""
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    patches = torch.stack([padded[:, :, dy:dy + h, dx:dx + w]
                           for dy in range(3) for dx in range(3)], dim=2)  # [B, C, 9, H, W]
    return patches.reshape(b, c * 9, h * w).transpose(1, 2)


def reference(fs_levels, ft_levels, w, b, masks=None, with_l2=True):
    """float64 loss from the spec, every step written out."""
    fs = torch.cat([neighbourhoods(x.double()) for x in fs_levels], 1)
    ft = torch.cat([neighbourhoods(x.detach().double()) for x in ft_levels], 1)
    w, b = w.double(), b.double()
    x = fs @ w.t() + b
    y = ((ft @ w.t() + b) > 0).double()
    bce = torch.clamp(x, min=0) - x * y + torch.log1p(torch.exp(-x.abs()))
    per_loc = bce.mean(-1)
    if with_l2:
        per_loc = per_loc + ((fs - ft) ** 2).mean(-1)
    keep = torch.ones(per_loc.shape, dtype=torch.bool) if masks is None else \
        torch.cat(masks, 1)
    image_means = [per_loc[i][keep[i]].mean() for i in range(per_loc.shape[0])
                   if keep[i].any()]
    return torch.stack(image_means).mean() if image_means else per_loc.sum() * 0


def close(a, b, rtol=1e-5, atol=1e-7):
    return torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize('with_l2', [True, False])
@pytest.mark.parametrize('logits_per_chunk', [7, 500, 10 ** 6])
def test_golden_value_and_gradient(with_l2, logits_per_chunk):
    loss = DenseLSHLoss(D, num_hashes=H, sigma=0.4, bias=0.05, with_l2=with_l2,
                        loss_weight=7.0, logits_per_chunk=logits_per_chunk)
    fs = [x.requires_grad_() for x in levels(seed=2)]
    ft = levels(seed=3)
    masks = keep_masks()
    w, b = loss.projection.weight, loss.projection.bias

    out = loss(tuple(fs), tuple(ft), mask=tuple(masks))
    fs64 = [x.detach().double().requires_grad_() for x in fs]
    expect = 7.0 * reference(fs64, ft, w, b, masks, with_l2)
    assert out.dtype == torch.float32
    assert close(out, expect)

    out.backward()
    expect.backward()
    for got, want in zip(fs, fs64):
        assert close(got.grad, want.grad, rtol=1e-4, atol=1e-9)
    # the image with no kept location contributes nothing
    assert all((x.grad[1] == 0).all() for x in fs)
    assert any(x.grad[0].abs().sum() > 0 for x in fs)


@pytest.mark.parametrize('with_l2', [True, False])
@pytest.mark.parametrize('masked', [True, False])
def test_float64_equals_the_unfolded_lsh_loss(with_l2, masked):
    """The convolution path is an exact rewrite of ``lsh_loss`` on the unfolded
    ``[B, L, 9C]`` features (the implementation it replaced): in float64, loss and student
    gradient to 1e-6 relative, masks included. The unfolded path's own arithmetic is
    fp32, so it is evaluated here on float64 copies written out with its formula."""
    g = torch.Generator().manual_seed(21)
    w = torch.randn(H, D, generator=g, dtype=torch.float64) * 0.3
    b = torch.randn(H, generator=g, dtype=torch.float64) * 0.1
    fs = [x.double().requires_grad_() for x in levels(seed=22)]
    fs_ref = [x.detach().clone().requires_grad_() for x in fs]
    ft = [x.double() for x in levels(seed=23)]
    masks = keep_masks(seed=24) if masked else None

    out = dense_lsh_loss(fs, ft, w, b, mask=masks, with_l2=with_l2, logits_per_chunk=50)
    assert out.dtype == torch.float64
    # the replaced path: unfold, then the [B, L, D] lsh_loss, here in float64
    u_s, u_t = unfold_levels(fs_ref), unfold_levels(ft)
    keep = None if masks is None else torch.cat(masks, 1)
    logits, target = u_s @ w.t() + b, ((u_t @ w.t() + b) > 0).double()
    per_loc = F.binary_cross_entropy_with_logits(logits, target, reduction='none').mean(-1)
    if with_l2:
        per_loc = per_loc + (u_s - u_t).pow(2).mean(-1)
    keep_f = torch.ones_like(per_loc) if keep is None else keep.double()
    per_image = (per_loc * keep_f).sum(1) / keep_f.sum(1).clamp(min=1)
    valid = (keep_f.sum(1) > 0).double()
    expect = (per_image * valid).sum() / valid.sum()
    torch.testing.assert_close(out, expect, rtol=1e-6, atol=0)
    out.backward()
    expect.backward()
    for got, want in zip(fs, fs_ref):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-6, atol=1e-12)
    # and the fp32 lsh_loss itself (today's unfolded computation) agrees to fp32 rounding
    fp32 = lsh_loss(unfold_levels([x.detach().float() for x in fs]),
                    unfold_levels([x.float() for x in ft]), w.float(), b.float(),
                    mask=keep, with_l2=with_l2)
    torch.testing.assert_close(fp32.double(), expect.detach(), rtol=1e-5, atol=1e-7)


def test_no_mask_is_mean_over_all_locations_and_functional_core():
    loss = DenseLSHLoss(D, num_hashes=H, sigma=1.3, logits_per_chunk=5)
    fs, ft = levels(batch=2, seed=4), levels(batch=2, seed=5)
    w, b = loss.projection.weight, loss.projection.bias
    expect = reference(fs, ft, w, b)
    assert close(loss(fs, ft), expect)
    assert close(dense_lsh_loss(fs, ft, w, b, logits_per_chunk=3), expect)
    # a single map is one level
    assert close(loss(fs[0], ft[0]), reference(fs[:1], ft[:1], w, b))


def test_all_locations_dropped_is_zero_with_finite_grad():
    loss = DenseLSHLoss(D, num_hashes=H, logits_per_chunk=16)
    fs = [x.requires_grad_() for x in levels(batch=2, seed=6)]
    masks = [torch.zeros(2, h * w, dtype=torch.bool) for h, w in SIZES]
    out = loss(fs, levels(batch=2, seed=7), mask=masks)
    assert out.item() == 0.0 and out.grad_fn is not None
    out.backward()
    assert all(torch.isfinite(x.grad).all() and (x.grad == 0).all() for x in fs)


def test_gradient_reaches_only_the_student():
    loss = DenseLSHLoss(D, num_hashes=H, logits_per_chunk=9)
    fs = [x.requires_grad_() for x in levels(seed=8)]
    ft = [x.requires_grad_() for x in levels(seed=9)]
    loss(fs, ft, mask=keep_masks()).backward()
    assert all(x.grad is not None for x in fs) and sum(x.grad.abs().sum() for x in fs) > 0
    assert all(x.grad is None for x in ft)
    assert list(loss.parameters()) == []
    assert all(not buf.requires_grad and buf.grad is None for buf in loss.buffers())


def test_bf16_autocast_large_activations_stay_finite():
    loss = DenseLSHLoss(D, num_hashes=H, logits_per_chunk=11, loss_weight=7.0)
    fs = [x.bfloat16().requires_grad_() for x in levels(seed=10, scale=1e3)]
    ft = [x.bfloat16() for x in levels(seed=11, scale=1e3)]
    masks = keep_masks()
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        out = loss(fs, ft, mask=masks)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    out.backward()
    assert all(torch.isfinite(x.grad.float()).all() for x in fs)
    # the hash logits were computed in fp32 from the bf16 values: same as fp32 inputs
    expect = 7.0 * reference([x.float() for x in fs], [x.float() for x in ft],
                             loss.projection.weight, loss.projection.bias, masks)
    assert close(out, expect, rtol=1e-4)


def saved_bytes(fn):
    """Bytes of the tensors autograd keeps for backward while ``fn`` builds its graph."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total[0]


def test_backward_keeps_only_the_student_gradient_at_tower_width():
    """The fused path stores, for backward, the student's gradient at C channels and
    nothing else: no unfolded [B·L, 9C] copy, no [B·L, H] logits, whatever H."""
    batch, hashes = 2, 512
    ft = levels(batch=batch, seed=13)
    fs = [x.requires_grad_() for x in levels(batch=batch, seed=12)]
    loss = DenseLSHLoss(D, num_hashes=hashes, logits_per_chunk=16)
    out, kept = saved_bytes(lambda: loss(fs, ft))
    rows = batch * sum(h * w for h, w in SIZES)
    tower_bytes = rows * C * 4
    assert kept <= tower_bytes + 1024
    out.backward()
    fs64 = [x.detach().double().requires_grad_() for x in fs]
    reference(fs64, ft, loss.projection.weight, loss.projection.bias).backward()
    for got, want in zip(fs, fs64):
        assert close(got.grad, want.grad, rtol=1e-4, atol=1e-9)


def test_no_grad_student_stores_nothing():
    fs, ft = levels(seed=15), levels(seed=16)
    loss = DenseLSHLoss(D, num_hashes=H)
    out, kept = saved_bytes(lambda: loss(fs, ft))
    assert kept == 0 and out.grad_fn is None
    assert close(out, reference(fs, ft, loss.projection.weight, loss.projection.bias))


def test_bf16_hashing_is_close_and_flips_few_bits():
    """hash_dtype='bf16' rounds the projection's operands: the loss stays within bf16
    rounding of fp32 and only teacher bits with a logit near 0 can flip."""
    fs = [x.requires_grad_() for x in levels(seed=17)]
    ft = levels(seed=18)
    exact = DenseLSHLoss(D, num_hashes=H, sigma=0.5)
    low = DenseLSHLoss(D, num_hashes=H, sigma=0.5, hash_dtype='bf16')
    torch.testing.assert_close(low.projection.weight, exact.projection.weight)
    a, b = exact(fs, ft), low(fs, ft)
    assert b.dtype == torch.float32
    assert abs(float(a.detach()) - float(b.detach())) < 1e-2 * float(a.detach())
    ga = torch.autograd.grad(a, fs)
    gb = torch.autograd.grad(b, fs)
    for x, y in zip(ga, gb):
        assert (x - y).norm() < 0.05 * x.norm()
    w = exact.projection.weight
    logits = unfold_levels(ft) @ w.t()
    logits_bf16 = (unfold_levels(ft).bfloat16() @ w.t().bfloat16()).float()
    flipped = ((logits > 0) != (logits_bf16 > 0)).float().mean()
    assert flipped < 0.01


def test_tf32_off_cuda_is_exact_fp32():
    fs, ft = levels(seed=19), levels(seed=20)
    exact = DenseLSHLoss(D, num_hashes=H, sigma=0.5)(fs, ft)
    tf32 = DenseLSHLoss(D, num_hashes=H, sigma=0.5, hash_dtype='tf32')(fs, ft)
    assert torch.equal(exact, tf32)


def test_registered_defaults_sigma_and_bias_samples():
    loss = MODELS.build(dict(type='DenseLSHLoss', in_channels=2304,
                             sigma='bbox_head.retina_cls.weight'))
    assert loss.projection.weight.shape == (4096, 2304)  # the authors' RetinaNet setting
    small = DenseLSHLoss(D, num_hashes=H, sigma='bbox_head.retina_cls.weight')
    teacher = nn.Module()
    teacher.bbox_head = nn.Module()
    teacher.bbox_head.retina_cls = nn.Conv2d(C, 9 * 3, 3)
    with torch.no_grad():
        teacher.bbox_head.retina_cls.weight.normal_(0, 0.01)
    unit = small.projection.weight.clone()
    small.init_from_teacher(teacher)
    std = teacher.bbox_head.retina_cls.weight.double().std()
    assert close(small.projection.weight, unit.double() * std)

    ft, masks = levels(seed=14), keep_masks()
    rows = small.bias_samples(teacher_feat=tuple(ft), mask=tuple(masks),
                              student_feat=None)
    keep = torch.cat(masks, 1)
    expect = torch.cat([neighbourhoods(x) for x in ft], 1)[keep]
    assert rows.shape == (int(keep.sum()), D)
    torch.testing.assert_close(rows, expect)


def test_input_errors_name_the_fix():
    with pytest.raises(ValueError, match='9 x the tower channels'):
        DenseLSHLoss(100)
    with pytest.raises(ValueError, match="hash_dtype must be one of .*'fp16'"):
        DenseLSHLoss(D, hash_dtype='fp16')
    with pytest.raises(ValueError, match='logits_per_chunk must be positive'):
        DenseLSHLoss(D, logits_per_chunk=0)
    loss = DenseLSHLoss(D, num_hashes=H)
    fs, ft = levels(), levels()
    with pytest.raises(ValueError, match='in_channels=36'):
        DenseLSHLoss(2 * D, num_hashes=H)(fs, ft)
    with pytest.raises(ValueError, match='3 levels but teacher_feat 2'):
        loss(fs, ft[:2])
    with pytest.raises(ValueError, match='feat_channels'):
        loss(fs, [x[:, :2] for x in ft])
    with pytest.raises(ValueError, match='dense.keep_mask'):
        loss(fs, ft, mask=keep_masks()[:2])
    with pytest.raises(ValueError, match=r'level 0: mask has shape'):
        loss(fs, ft, mask=[m[:, :-1] for m in keep_masks()])
    with pytest.raises(ValueError, match='cls_convs'):
        loss(fs[0].flatten(2), ft[0].flatten(2))


def test_cuda_precision_switches_only_tf32_and_restores_it():
    """On CUDA the hash convolutions set TF32 for themselves ('fp32' off, so the product is
    exact; 'tf32' on) and leave the user's other cuDNN settings alone. The flags are
    process-wide Python settings, so this runs without a GPU."""
    from mmkd.models.losses.dense_lsh_loss import _ProjectionPrecision
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32)
    try:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = True, True, True
        for hash_dtype, tf32 in (('fp32', False), ('tf32', True), ('bf16', False)):
            precision = _ProjectionPrecision(hash_dtype, torch.float32, torch.device('cuda'))
            with precision._flags():
                assert (cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic) == \
                    (tf32, True, True)
            assert cudnn.allow_tf32 is True
    finally:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = saved
