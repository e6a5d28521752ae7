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
    from_tensor = NDLoss(means)
    # a path alone is read at build
    at_build = NDLoss(path)
    assert torch.equal(at_build.normalized_means, from_tensor.normalized_means)
    assert torch.equal(at_build(s, t, labels), from_tensor(s, t, labels))
    # a path with the shapes is read when training starts (init_from_teacher)
    from_file = NDLoss(path, num_classes=C, in_channels=D)
    assert torch.equal(from_file.normalized_means, torch.zeros(C, D))
    with pytest.raises(RuntimeError, match=r'means\.pth.*not loaded yet.*init_from_teacher'):
        from_file(s, t, labels)
    from_file.init_from_teacher(None)
    assert torch.equal(from_file.normalized_means, from_tensor.normalized_means)
    assert torch.equal(from_file(s, t, labels), from_tensor(s, t, labels))
    from_file.init_from_teacher(None)  # idempotent
    assert torch.equal(from_file.normalized_means, from_tensor.normalized_means)
    assert 'normalized_means' in from_file.state_dict()
    fresh = NDLoss(torch.zeros(C, D))
    fresh.load_state_dict(from_file.state_dict())
    assert torch.equal(fresh.normalized_means, from_file.normalized_means)
    # a state dict (checkpoint) also makes a deferred loss ready, without the file
    deferred = NDLoss(str(tmp_path / 'not_written_yet.pth'), num_classes=C, in_channels=D)
    deferred.load_state_dict(from_file.state_dict())
    assert torch.equal(deferred(s, t, labels), from_tensor(s, t, labels))


def test_deferred_file_missing_at_training_start(tmp_path):
    path = str(tmp_path / 'work' / 'class_means.pth')
    loss = NDLoss(path, num_classes=C, in_channels=D)  # builds without the file
    message = r'python tools/class_means\.py CONFIG --out .*work/class_means\.pth'
    with pytest.raises(FileNotFoundError, match=message):
        loss.init_from_teacher(None)


def test_wrong_shaped_file_refused(tmp_path):
    path = str(tmp_path / 'means.pth')
    save_class_means(path, torch.randn(C, D), torch.ones(C), dict(includes_background=True))
    # deferred: refused when training starts, naming both shapes
    deferred = NDLoss(path, num_classes=C - 1, in_channels=D)
    with pytest.raises(ValueError, match=r'means\.pth.*\(4, 5\).*\(3, 5\)'):
        deferred.init_from_teacher(None)
    with pytest.raises(ValueError, match=r'\(4, 5\).*\(4, 8\).*tools/class_means\.py'):
        NDLoss(path, num_classes=C, in_channels=8).init_from_teacher(None)
    # read at build: refused at build
    with pytest.raises(ValueError, match=r'means\.pth.*\(4, 5\).*\(3, 5\).*background'):
        NDLoss(path, num_classes=C - 1)
    with pytest.raises(ValueError, match=r'\(4, 5\).*\(4, 8\)'):
        NDLoss(path, in_channels=8)
    with pytest.raises(ValueError, match=r'tensor.*\(4, 5\).*\(4, 8\)'):
        NDLoss(torch.randn(C, D), in_channels=8)


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


# ------------------------------------------------------------------ dense ND (RetinaNet)
def make_dense(seed=0, num_anchors=3, sizes=((4, 5), (2, 3))):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(C, D, generator=g) + 1
    s_feats, t_feats, labels = [], [], []
    for h, w in sizes:
        s = torch.randn(2, D, h, w, generator=g)
        t = torch.randn(2, D, h, w, generator=g)
        s[:, :, : h // 2] *= 5  # both branches: |s| > |t| and |s| < |t|
        t[:, :, h // 2:] *= 5
        # foreground 0..C-1, background C (mmdet), ignored -1; mostly background
        lab = torch.randint(0, C, (2, h * w * num_anchors), generator=g)
        bg = torch.rand(lab.shape, generator=g) < 0.6
        lab[bg] = C
        lab[torch.rand(lab.shape, generator=g) < 0.1] = -1
        s_feats.append(s.requires_grad_())
        t_feats.append(t)
        labels.append(lab)
    return means, s_feats, t_feats, labels


def ref_dense_nd(s_feats, t_feats, labels, means, w=1.0):
    """float64, one positive anchor at a time: its location's feature, its label."""
    c = means.double() / means.double().norm(dim=1, keepdim=True)
    terms = []
    for s, t, lab in zip(s_feats, t_feats, labels):
        b_, _, h, w_ = s.shape
        a_ = lab.shape[1] // (h * w_)
        for b in range(b_):
            for y in range(h):
                for x in range(w_):
                    for a in range(a_):
                        k = int(lab[b, (y * w_ + x) * a_ + a])
                        if 0 <= k < C:
                            sv, tv = s[b, :, y, x].detach().double(), t[b, :, y, x].double()
                            terms.append(1 - (sv @ c[k]) / max(sv.norm(), tv.norm()))
    return w * torch.stack(terms).mean(), len(terms)


def test_dense_golden_and_gradient_only_at_positive_locations():
    from mmkd.models.losses import DenseNDLoss
    means, s_feats, t_feats, labels = make_dense()
    loss = DenseNDLoss(means, num_classes=C, in_channels=D, loss_weight=2.0)
    out = loss(s_feats, t_feats, labels)
    ref, n_pos = ref_dense_nd(s_feats, t_feats, labels, means, 2.0)
    assert n_pos > 5
    assert torch.allclose(out.double(), ref, rtol=1e-5)
    out.backward()
    for s, lab in zip(s_feats, labels):
        b_, _, h, w_ = s.shape
        pos_loc = ((lab >= 0) & (lab < C)).view(b_, h, w_, -1).any(-1)  # [B, H, W]
        grad_norm = s.grad.norm(dim=1)
        assert (grad_norm[pos_loc] > 0).all() and (grad_norm[~pos_loc] == 0).all()
    # a single level given as a tensor
    one = loss(s_feats[0], t_feats[0], labels[0])
    ref_one, _ = ref_dense_nd(s_feats[:1], t_feats[:1], labels[:1], means, 2.0)
    assert torch.allclose(one.double(), ref_one, rtol=1e-5)


def test_dense_no_positive_and_errors(tmp_path):
    from mmkd.models.losses import DenseNDLoss
    means, s_feats, t_feats, labels = make_dense(seed=1)
    loss = DenseNDLoss(means)
    background = [torch.full_like(lab, C) for lab in labels]
    out = loss(s_feats, t_feats, background)
    assert out.item() == 0.0 and out.grad_fn is not None
    with pytest.raises(ValueError, match=r'H·W·A'):
        loss(s_feats, t_feats, [lab[:, :-1] for lab in labels])
    with pytest.raises(ValueError, match='same width'):
        loss([s[:, :3] for s in s_feats], [t[:, :3] for t in t_feats], labels)
    # a RoI (background-row) class-means file is refused
    path = str(tmp_path / 'roi_means.pth')
    save_class_means(path, torch.randn(C + 1, D), torch.ones(C + 1),
                     dict(includes_background=True))
    with pytest.raises(ValueError, match='background row'):
        DenseNDLoss(path, num_classes=C + 1, in_channels=D).init_from_teacher(None)
