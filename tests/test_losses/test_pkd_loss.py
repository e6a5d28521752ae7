"""PKD (Pearson-correlation feature imitation): a float64 golden value, an independent
reference through the per-channel Pearson correlation, MMRazor's normalisation, resizing,
the padding mask and its one-line errors."""
import pytest
import torch
import torch.nn.functional as F

from mmkd.models.losses import PKDLoss, pkd_loss
from mmkd.registry import MODELS


def reference_pkd(s, t):
    """``mean_c (M - 1) / M · (1 - r_c)``: r_c the Pearson correlation of channel c of
    student and teacher over its M = B·H·W values (torch.corrcoef, float64). Equal to half
    the MSE of the per-channel standardised maps (unbiased std), up to PKD's 1e-6 on the
    std."""
    s, t = s.double(), t.double()
    C = s.size(1)
    s = s.transpose(0, 1).reshape(C, -1)
    t = t.transpose(0, 1).reshape(C, -1)
    M = s.size(1)
    r = torch.stack([torch.corrcoef(torch.stack([s[c], t[c]]))[0, 1] for c in range(C)])
    return ((M - 1) / M * (1 - r)).mean()


def test_golden_value_float64():
    # a fixed input whose value was computed once from the formula, kept as the golden
    # number: any change of the math (reduction, std, eps, halving) moves it
    s = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2).sin()
    t = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2).cos() * 5 + 1
    got = PKDLoss(loss_weight=2.0)(s, t)
    assert got.dtype == torch.float32
    expected = 2.0 * reference_pkd(s, t)
    assert expected.item() == pytest.approx(1.5661151, abs=1e-6)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('shape', [(2, 8, 5, 7), (1, 3, 16, 16), (4, 64, 4, 4)])
def test_matches_the_pearson_reference(shape):
    torch.manual_seed(sum(shape))
    s = torch.randn(*shape) * 3 + 2
    t = 0.5 * s + torch.randn(*shape)  # correlated, other scale
    torch.testing.assert_close(pkd_loss(s, t).double(), reference_pkd(s, t),
                               rtol=1e-4, atol=1e-6)


def test_is_mmrazor_normalisation_over_batch_and_space():
    """Each channel is standardised over B·H·W together (not per image): then MSE / 2."""
    torch.manual_seed(0)
    s, t = torch.randn(3, 4, 6, 6), torch.randn(3, 4, 6, 6) * 10

    def norm(x):
        flat = x.double().permute(1, 0, 2, 3).reshape(4, -1)
        flat = (flat - flat.mean(-1, keepdim=True)) / (flat.std(-1, keepdim=True) + 1e-6)
        return flat.reshape(4, 3, 6, 6).permute(1, 0, 2, 3)

    expected = F.mse_loss(norm(s), norm(t)) / 2
    torch.testing.assert_close(pkd_loss(s, t).double(), expected, rtol=1e-5, atol=1e-7)


def test_ignores_each_channels_scale_and_offset_but_not_its_pattern():
    torch.manual_seed(1)
    s, t = torch.randn(2, 5, 8, 8), torch.randn(2, 5, 8, 8)
    scale = torch.tensor([0.1, 1.0, 7.0, 1e3, 1e4]).view(1, 5, 1, 1)
    offset = torch.tensor([-4.0, 0.0, 3.0, 1e2, -1e3]).view(1, 5, 1, 1)
    base = pkd_loss(s, t)
    torch.testing.assert_close(pkd_loss(s * scale + offset, t), base, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pkd_loss(s, t * scale + offset), base, rtol=1e-4, atol=1e-5)
    # a perfect imitation up to scale costs ~0, a sign flip costs the most (r = -1)
    assert pkd_loss(t * 3 + 1, t) < 1e-6
    M = 2 * 8 * 8
    torch.testing.assert_close(pkd_loss(-t, t).double(),
                               torch.tensor(2.0 * (M - 1) / M, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)


def test_resizes_the_student_to_the_teacher_and_back():
    torch.manual_seed(2)
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 8, 8)
    up = F.interpolate(s, size=(8, 8), mode='bilinear', align_corners=False)
    torch.testing.assert_close(PKDLoss()(s, t), pkd_loss(up, t))
    down = F.interpolate(t, size=(4, 4), mode='bilinear', align_corners=False)
    torch.testing.assert_close(PKDLoss(resize_student=False)(s, t), pkd_loss(s, down))


def test_padding_mask_uses_real_positions_only():
    torch.manual_seed(3)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, :8, :8] = 1  # image 0: top-left 2x2 of the 4x4 map is real
    mask[1] = 1
    got = pkd_loss(s, t, mask)
    # the reference: the real positions only, as one [1, C, 1, n] map
    keep = F.interpolate(mask, size=(4, 4), mode='nearest').bool().expand(-1, 3, -1, -1)
    s_real = s.permute(1, 0, 2, 3)[keep.permute(1, 0, 2, 3)].view(3, -1)
    t_real = t.permute(1, 0, 2, 3)[keep.permute(1, 0, 2, 3)].view(3, -1)
    expected = reference_pkd(s_real[None, :, None], t_real[None, :, None])
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-6)
    # padding content does not matter
    s2 = s.clone()
    s2[0, :, 2:, :] = 1e4
    torch.testing.assert_close(pkd_loss(s2, t, mask), got)


def test_gradient_reaches_the_student_only_and_is_finite_at_large_values():
    # raw-pixel-like magnitudes (FPN L2 would be ~1e12 here): PKD stays O(1)
    s = (torch.randn(2, 4, 5, 5) * 1e6).requires_grad_()
    t = (torch.randn(2, 4, 5, 5) * 1e6).requires_grad_()
    loss = PKDLoss(loss_weight=6.0)(s, t)
    assert 0 < loss < 6 * 2
    loss.backward()
    assert torch.isfinite(loss) and s.grad.abs().sum() > 0 and t.grad is None


def test_registered_and_clear_errors():
    assert isinstance(MODELS.build(dict(type='PKDLoss', loss_weight=10)), PKDLoss)
    with pytest.raises(ValueError, match="ConvConnector', in_channels=8, out_channels=16"):
        pkd_loss(torch.randn(2, 8, 4, 4), torch.randn(2, 16, 4, 4))
    with pytest.raises(ValueError, match=r'\[B, C, H, W\]'):
        pkd_loss(torch.randn(8, 4), torch.randn(8, 4))
