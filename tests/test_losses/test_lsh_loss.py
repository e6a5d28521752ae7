"""Golden-value tests for LSHLoss: references are written from the spec in float64."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from mmkd.models.losses import LSHLoss, lsh_loss

D, H = 6, 24


def ref_per_sample(fs, ft, w, b, with_l2=True):
    """float64 per-sample loss: mean_h BCE(W fs + b, 1[W ft + b > 0]) (+ mean_d (fs-ft)^2)."""
    fs, ft, w, b = (x.detach().double() for x in (fs, ft, w, b))
    x = fs @ w.t() + b
    y = ((ft @ w.t() + b) > 0).double()
    bce = torch.clamp(x, min=0) - x * y + torch.log1p(torch.exp(-x.abs()))
    out = bce.mean(-1)
    if with_l2:
        out = out + ((fs - ft) ** 2).mean(-1)
    return out


def inputs(*shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    fs = (torch.randn(*shape, D, generator=g) * scale).requires_grad_()
    ft = torch.randn(*shape, D, generator=g) * scale
    return fs, ft


def close(a, b):
    return torch.allclose(a.double(), torch.as_tensor(b, dtype=torch.float64), rtol=1e-5,
                          atol=1e-7)


@pytest.mark.parametrize('with_l2', [True, False])
def test_flat_golden(with_l2):
    loss = LSHLoss(D, num_hashes=H, sigma=0.7, bias=0.1, with_l2=with_l2, loss_weight=3.0)
    fs, ft = inputs(10)
    w, b = loss.projection.weight, loss.projection.bias
    expect = 3.0 * ref_per_sample(fs, ft, w, b, with_l2).mean()
    assert close(loss(fs, ft), expect)
    assert close(lsh_loss(fs, ft, w, b, with_l2=with_l2), expect / 3.0)


def test_defaults_and_projection_draw():
    loss = LSHLoss(D, sigma=0.5, seed=3)
    assert loss.projection.weight.shape == (4 * D, D)
    assert loss.projection.weight.dtype == torch.float32
    expect = torch.randn(4 * D, D, generator=torch.Generator().manual_seed(3)) * 0.5
    assert torch.equal(loss.projection.weight, expect)
    assert torch.equal(loss.projection.bias, torch.zeros(4 * D))
    assert list(loss.parameters()) == []
    assert set(loss.state_dict()) == {'projection.weight', 'projection.bias'}


def test_masked_batch_golden():
    loss = LSHLoss(D, num_hashes=H, sigma=1.3)
    fs, ft = inputs(3, 5, seed=1)
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    per = ref_per_sample(fs, ft, loss.projection.weight, loss.projection.bias)
    img_means = [per[i][mask[i]].mean() for i in range(3) if mask[i].any()]
    expect = torch.stack(img_means).mean()  # the all-masked image is excluded
    assert close(loss(fs, ft, mask=mask), expect)
    assert close(loss(fs, ft, mask=mask.float()), expect)
    # No mask: every location kept; all images have the same L, so it is the plain mean.
    assert close(loss(fs, ft), per.mean())


def test_all_masked_batch_is_zero_with_finite_grad():
    loss = LSHLoss(D, num_hashes=H)
    fs, ft = inputs(2, 4, seed=2)
    out = loss(fs, ft, mask=torch.zeros(2, 4, dtype=torch.bool))
    assert out.grad_fn is not None and out.item() == 0.0
    out.backward()
    assert torch.isfinite(fs.grad).all() and (fs.grad == 0).all()
    # Empty [0, D] input behaves the same.
    fs0 = torch.zeros(0, D, requires_grad=True)
    out0 = loss(fs0, torch.zeros(0, D))
    assert out0.item() == 0.0 and out0.grad_fn is not None


def test_correct_only_golden():
    loss = LSHLoss(D, num_hashes=H, correct_only=True, loss_weight=2.0)
    fs, ft = inputs(6, seed=4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    teacher_logits = torch.full((6, 3), -1.0)
    pred = torch.tensor([0, 2, 2, 1, 1, 0])  # correct at 0, 2, 4
    teacher_logits[torch.arange(6), pred] = 1.0
    per = ref_per_sample(fs, ft, loss.projection.weight, loss.projection.bias)
    expect = 2.0 * per[pred == labels].mean()
    assert close(loss(fs, ft, teacher_logits=teacher_logits, labels=labels), expect)
    # all wrong -> 0, finite gradient
    out = loss(fs, ft, teacher_logits=teacher_logits, labels=(pred + 1) % 3)
    assert out.item() == 0.0 and out.grad_fn is not None
    out.backward()
    assert torch.isfinite(fs.grad).all()
    with pytest.raises(ValueError, match='teacher_logits'):
        loss(fs, ft)


class TinyTeacher(nn.Module):

    def __init__(self):
        super().__init__()
        self.roi_head = nn.Module()
        self.roi_head.bbox_head = nn.Module()
        self.roi_head.bbox_head.fc_cls = nn.Linear(D, 4)
        with torch.no_grad():
            self.roi_head.bbox_head.fc_cls.weight.normal_(0, 0.03)


def test_sigma_from_teacher_parameter():
    teacher = TinyTeacher()
    path = 'roi_head.bbox_head.fc_cls.weight'
    loss = LSHLoss(D, num_hashes=512, sigma=path, seed=5)
    unit = LSHLoss(D, num_hashes=512, sigma=1.0, seed=5)
    assert torch.equal(loss.projection.weight, unit.projection.weight)  # drawn with sigma 1
    loss.init_from_teacher(teacher)
    std = teacher.roi_head.bbox_head.fc_cls.weight.detach().double().std()
    assert torch.allclose(loss.projection.weight.double(),
                          unit.projection.weight.double() * std, rtol=1e-5)
    assert abs(loss.projection.weight.double().std() / std - 1) < 0.05
    loss.init_from_teacher(teacher)  # idempotent
    assert torch.allclose(loss.projection.weight.double(),
                          unit.projection.weight.double() * std, rtol=1e-5)
    # a float sigma ignores the teacher
    unit.init_from_teacher(teacher)
    assert torch.equal(unit.projection.weight, LSHLoss(D, 512, seed=5).projection.weight)

    bad = LSHLoss(D, num_hashes=H, sigma='roi_head.bbox_head.fc_cl.weight')
    with pytest.raises(ValueError, match=r'roi_head\.bbox_head\.fc_cls\.weight'):
        bad.init_from_teacher(teacher)


@pytest.mark.parametrize('mode', ['median', 'mean'])
def test_fit_bias(mode):
    loss = LSHLoss(D, num_hashes=H)
    g = torch.Generator().manual_seed(6)
    feats = torch.randn(1000, D, generator=g) * 2 + 3  # off-centre: b = 0 would be lopsided
    b = loss.fit_bias(feats, mode=mode)
    proj = feats.double() @ loss.projection.weight.double().t()
    if mode == 'mean':
        assert torch.allclose(b.double(), -proj.mean(0), rtol=1e-5, atol=1e-5)
    else:
        frac = ((proj + loss.projection.bias.double()) > 0).double().mean(0)
        assert (frac - 0.5).abs().max() < 0.01
    assert torch.equal(loss.projection.bias, b)


def test_state_dict_roundtrip_into_different_seed():
    src = LSHLoss(D, num_hashes=H, seed=0)
    src.fit_bias(torch.randn(50, D))
    dst = LSHLoss(D, num_hashes=H, seed=1)
    assert not torch.equal(src.projection.weight, dst.projection.weight)
    dst.load_state_dict(src.state_dict())
    assert torch.equal(src.projection.weight, dst.projection.weight)
    assert torch.equal(src.projection.bias, dst.projection.bias)


def test_same_seed_identical_across_processes(tmp_path):
    code = ('import sys, torch; from mmkd.models.losses import LSHLoss; '
            'torch.manual_seed(int(sys.argv[2])); '  # global RNG state must not matter
            'l = LSHLoss(64, seed=7, sigma=0.3); '
            'torch.save(l.state_dict(), sys.argv[1])')
    procs = [
        subprocess.Popen([sys.executable, '-c', code, str(tmp_path / f'{i}.pth'), str(i)])
        for i in range(2)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    a, b = (torch.load(tmp_path / f'{i}.pth') for i in range(2))
    assert set(a) == {'projection.weight', 'projection.bias'}
    for k in a:
        assert torch.equal(a[k], b[k])
    assert torch.equal(a['projection.weight'], LSHLoss(64, seed=7, sigma=0.3).projection.weight)


def test_gradient_reaches_only_student():
    loss = LSHLoss(D, num_hashes=H)
    fs, ft = inputs(5, seed=8)
    ft.requires_grad_()
    loss(fs, ft).backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0
    assert ft.grad is None
    for buf in loss.buffers():
        assert not buf.requires_grad and buf.grad is None


def test_bf16_autocast_large_inputs():
    loss = LSHLoss(D, num_hashes=H)
    fs, ft = inputs(2, 7, seed=9, scale=1e3)
    fs16 = fs.detach().bfloat16().requires_grad_()
    ft16 = ft.bfloat16()
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        out = loss(fs16, ft16)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    out.backward()
    assert torch.isfinite(fs16.grad.float()).all()
    expect = ref_per_sample(fs16.float(), ft16.float(), loss.projection.weight,
                            loss.projection.bias).mean()
    assert close(out, expect)


def test_shape_errors():
    loss = LSHLoss(D, num_hashes=H)
    with pytest.raises(ValueError, match='LinearConnector'):
        loss(torch.randn(4, D + 2), torch.randn(4, D))
    with pytest.raises(ValueError, match='in_channels'):
        loss(torch.randn(4, D + 2), torch.randn(4, D + 2))
    with pytest.raises(ValueError, match='mask'):
        loss(torch.randn(2, 3, D), torch.randn(2, 3, D), mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match='same shape'):
        loss(torch.randn(2, 3, D), torch.randn(2, 4, D))
