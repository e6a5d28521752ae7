"""Golden-value tests for NDLoss and the class-means file."""
import pytest
import torch

from mmkd.models.losses import NDLoss, nd_loss
from mmkd.utils.class_means import load_class_means, save_class_means

C, D = 4, 5


def ref_nd(s, t, labels, means, w=1.0):
    """float64: w * mean_i [1 - <s_i, c_yi/|c_yi|> / max(|s_i|, |t_i|)]."""
    s, t, means = (x.detach().double() for x in (s, t, means))
    c = means / means.norm(dim=1, keepdim=True)
    terms = [
        1 - (s[i] * c[labels[i]]).sum() / max(s[i].norm(), t[i].norm())
        for i in range(len(labels))
    ]
    return w * torch.stack(terms).mean()


def make(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(C, D, generator=g) + 1
    s = torch.randn(n, D, generator=g)
    t = torch.randn(n, D, generator=g)
    # half the samples with |s| > |t|, half with |s| < |t|
    s[: n // 2] *= 5
    t[n // 2:] *= 5
    labels = torch.randint(0, C, (n, ), generator=g)
    return means, s.requires_grad_(), t, labels


def test_golden_both_branches():
    means, s, t, labels = make()
    sn, tn = s.detach().norm(dim=1), t.norm(dim=1)
    assert (sn > tn).any() and (sn < tn).any()
    loss = NDLoss(means, num_classes=C, in_channels=D, loss_weight=1.5)
    out = loss(s, t, labels)
    assert torch.allclose(out.double(), ref_nd(s, t, labels, means, 1.5), rtol=1e-5)
    for half in (slice(0, 4), slice(4, 8)):  # each branch on its own
        got = loss(s[half], t[half], labels[half])
        assert torch.allclose(got.double(), ref_nd(s[half], t[half], labels[half], means, 1.5),
                              rtol=1e-5)
    c_hat = means / means.norm(dim=1, keepdim=True)
    assert torch.allclose(nd_loss(s, t, labels, c_hat).double(),
                          ref_nd(s, t, labels, means), rtol=1e-5)


def test_small_student_norm_is_pushed_up_along_class_mean():
    means, _, _, _ = make(seed=1)
    c_hat = means[2] / means[2].norm()
    s = (0.3 * c_hat + 0.05 * torch.randn(D)).unsqueeze(0).requires_grad_()
    t = 10 * torch.randn(1, D)
    labels = torch.tensor([2])
    loss = NDLoss(means)
    out = loss(s, t, labels)
    out.backward()
    assert (s.grad[0] @ c_hat) < 0  # moving along ĉ decreases the loss
    bigger = loss(s.detach() + 0.5 * c_hat, t, labels)
    assert bigger < out
    # ‖t‖ is a constant: no gradient flows teacher-side
    t.requires_grad_()
    loss(s, t, labels).backward()
    assert t.grad is None


def test_zero_count_row_and_empty_batch():
    means = torch.randn(C, D)
    means[1] = 0  # a class that never occurred
    loss = NDLoss(means)
    assert torch.isfinite(loss.normalized_means).all()
    s = torch.randn(3, D, requires_grad=True)
    out = loss(s, torch.randn(3, D), torch.tensor([1, 1, 0]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(s.grad).all()
    s0 = torch.zeros(0, D, requires_grad=True)
    out0 = loss(s0, torch.zeros(0, D), torch.zeros(0, dtype=torch.long))
    assert out0.item() == 0.0 and out0.grad_fn is not None


def test_bf16_autocast():
    means, s, t, labels = make(seed=2)
    loss = NDLoss(means)
    s16, t16 = (s.detach() * 1e3).bfloat16().requires_grad_(), (t * 1e3).bfloat16()
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        out = loss(s16, t16, labels)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), ref_nd(s16.float(), t16.float(), labels, means),
                          rtol=1e-5)


def test_class_means_file_roundtrip_and_as_path(tmp_path):
    means, s, t, labels = make(seed=3)
    counts = torch.tensor([3, 0, 7, 1])
    meta = dict(teacher_checkpoint='t.pth', dataset='coco', feature='roi_head.shared_fcs',
                num_classes=3, includes_background=True)
    path = str(tmp_path / 'sub' / 'means.pth')
    save_class_means(path, means, counts, meta)
    m2, c2, meta2 = load_class_means(path)
    assert torch.equal(m2, means) and torch.equal(c2, counts) and meta2 == meta
    from_file = NDLoss(path, num_classes=C, in_channels=D)
    from_tensor = NDLoss(means)
    assert torch.equal(from_file.normalized_means, from_tensor.normalized_means)
    assert torch.equal(from_file(s, t, labels), from_tensor(s, t, labels))
    assert 'normalized_means' in from_file.state_dict()
    fresh = NDLoss(torch.zeros(C, D))
    fresh.load_state_dict(from_file.state_dict())
    assert torch.equal(fresh.normalized_means, from_file.normalized_means)


def test_wrong_shaped_file_refused(tmp_path):
    path = str(tmp_path / 'means.pth')
    save_class_means(path, torch.randn(C, D), torch.ones(C), dict(includes_background=True))
    with pytest.raises(ValueError, match=r'means\.pth.*\(4, 5\).*\(3, 5\)'):
        NDLoss(path, num_classes=C - 1, in_channels=D)
    with pytest.raises(ValueError, match=r'\(4, 5\).*\(4, 8\).*tools/class_means\.py'):
        NDLoss(path, num_classes=C, in_channels=8)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='tools/class_means.py'):
        load_class_means(str(tmp_path / 'missing.pth'))
    other = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={}), other)
    with pytest.raises(ValueError, match='not a class-means file'):
        NDLoss(other)


def test_input_errors():
    loss = NDLoss(torch.randn(C, D))
    with pytest.raises(ValueError, match='NDProjector'):
        loss(torch.randn(3, D + 1), torch.randn(3, D), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match='labels'):
        loss(torch.randn(3, D), torch.randn(3, D), torch.zeros(3))
    with pytest.raises(IndexError, match=r'\[0, 4\)'):
        loss(torch.randn(2, D), torch.randn(2, D), torch.tensor([0, C]))
    with pytest.raises(IndexError, match=r'\[0, 4\)'):
        loss(torch.randn(2, D), torch.randn(2, D), torch.tensor([0, -1]))
