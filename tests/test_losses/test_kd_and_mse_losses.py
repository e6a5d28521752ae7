"""Golden values for the baseline losses (KD, FitNet/L2) against float64 formulas."""
import pytest
import torch
import torch.nn.functional as F

from mmkd.models.losses import FeatureMSELoss, KDLoss


def reference_softmax_kd(s, t, T):
    s, t = s.double() / T, t.double() / T
    p_t = torch.softmax(t, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s, -1))).sum(-1)
    return kl.mean() * T * T


def reference_sigmoid_kd(s, t, T):
    s, t = s.double() / T, t.double() / T
    p_s, p_t = torch.sigmoid(s), torch.sigmoid(t)
    kl = p_t * torch.log(p_t / p_s) + (1 - p_t) * torch.log((1 - p_t) / (1 - p_s))
    return kl.mean() * T * T


@pytest.mark.parametrize('T', [1.0, 4.0])
def test_softmax_kd_is_batchmean_kl_times_t2(T):
    torch.manual_seed(0)
    s, t = torch.randn(7, 5), torch.randn(7, 5) * 2
    got = KDLoss(temperature=T, loss_weight=0.5)(s, t)
    torch.testing.assert_close(got.double(), 0.5 * reference_softmax_kd(s, t, T),
                               rtol=1e-5, atol=1e-7)


def test_softmax_kd_flattens_leading_dims():
    torch.manual_seed(1)
    s, t = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    torch.testing.assert_close(KDLoss()(s, t).double(),
                               reference_softmax_kd(s.view(6, 6), t.view(6, 6), 1.0))


@pytest.mark.parametrize('T', [1.0, 2.0])
def test_sigmoid_kd_is_elementwise_bernoulli_kl(T):
    torch.manual_seed(2)
    s, t = torch.randn(2, 12, 4, 4), torch.randn(2, 12, 4, 4) * 3
    got = KDLoss(temperature=T, mode='sigmoid')(s, t)
    torch.testing.assert_close(got.double(), reference_sigmoid_kd(s, t, T))


def test_sigmoid_kd_is_never_negative_when_equal():
    t = torch.randn(4, 9, 8, 8) * 6
    assert KDLoss(mode='sigmoid')(t.clone(), t) >= 0


def test_kd_gradient_reaches_the_student_only():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    KDLoss(temperature=2.0)(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


def test_kd_refuses_different_class_counts():
    with pytest.raises(ValueError, match='same number of classes'):
        KDLoss()(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="'softmax' or 'sigmoid'"):
        KDLoss(mode='hard')


def test_feature_mse_with_and_without_padding_mask():
    torch.manual_seed(3)
    s, t = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)
    torch.testing.assert_close(FeatureMSELoss(loss_weight=2.0)(s, t),
                               2.0 * F.mse_loss(s, t))
    mask = torch.zeros(2, 1, 24, 32)
    mask[0, :, :12, :16] = 1  # image 0: top-left quarter is real
    mask[1] = 1
    got = FeatureMSELoss()(s, t, mask)
    diff = (s.double() - t.double())**2
    expected = (diff[0, :, :3, :4].sum() + diff[1].sum()) / (4 * (12 + 48))
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_feature_mse_shape_mismatch_names_the_connector():
    with pytest.raises(ValueError, match="ConvConnector', in_channels=16, out_channels=64"):
        FeatureMSELoss()(torch.randn(1, 16, 4, 4), torch.randn(1, 64, 4, 4))
