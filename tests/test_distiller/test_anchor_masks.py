"""The RetinaNet location mask of LSH (``dense.keep_mask``) against the LSHFM authors'
rule, built here from torchvision's ``Matcher`` exactly as their ``retinanet_KD.py``
uses it: low-quality matches allowed, a location kept unless all its anchors are
"between thresholds", images without gt skipped."""
from types import SimpleNamespace

import pytest
import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_overlaps
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torchvision.models.detection._utils import Matcher

from mmkd.models.distillers.anchor_masks import anchor_keep_mask

SIZES = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]  # a 64 x 64 batch, strides 8 .. 128
ASSIGNER = dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                ignore_iof_thr=-1)


def head(ratios=(0.5, 1.0, 2.0), scales_per_octave=3):
    init_default_scope('mmdet')
    generator = TASK_UTILS.build(dict(
        type='AnchorGenerator', octave_base_scale=4, scales_per_octave=scales_per_octave,
        ratios=list(ratios), strides=[8, 16, 32, 64, 128]))
    return SimpleNamespace(prior_generator=generator, train_cfg=dict(assigner=ASSIGNER))


def sample(boxes) -> DetDataSample:
    boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    out = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64)))
    out.gt_instances = InstanceData(bboxes=boxes, labels=torch.zeros(len(boxes)).long())
    return out


def authors_mask(dense_head, samples):
    """``[B, L]``: LSHFM's ``compute_loss`` (retinanet_KD.py) on mmdet's anchors."""
    anchors = torch.cat(dense_head.prior_generator.grid_priors(SIZES, device='cpu'))
    a = dense_head.prior_generator.num_base_priors[0]
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    rows = []
    for s in samples:
        gt = s.gt_instances.bboxes
        if gt.numel() == 0:
            rows.append(torch.zeros(anchors.size(0) // a, dtype=torch.bool))
            continue
        matched = matcher(bbox_overlaps(gt, anchors))  # [G, A] quality matrix
        rows.append(matched.reshape(-1, a).sum(1) > -2 * a)
    return torch.stack(rows)


def test_low_quality_match_keeps_an_all_ignored_location():
    """One anchor per location: a gt whose best anchor (level 0, location (4, 4)) has IoU
    0.45 — in the ignore band, but the assigner's low-quality positive."""
    h = head(ratios=(1.0, ), scales_per_octave=1)
    side = (0.45 * 32 * 32) ** 0.5
    box = [32 - side / 2, 32 - side / 2, 32 + side / 2, 32 + side / 2]
    samples = [sample(box)]
    ours = torch.cat(anchor_keep_mask(h, SIZES, samples), 1)
    band = torch.cat(anchor_keep_mask(h, SIZES, samples, rule='band'), 1)
    where = 4 * 8 + 4
    assert not band[0, where] and ours[0, where]  # the rule's difference, here
    assert torch.equal(ours, authors_mask(h, samples))
    assert torch.equal(ours & ~band, torch.zeros_like(ours).index_fill_(1, torch.tensor(
        [where]), True))


def shifted_boxes(anchors, loc: int, seed: int):
    """One gt box per anchor of location ``loc``: the anchor shifted along x or y (at
    random) until its IoU with it is a random value in [0.40, 0.49)."""
    gen = torch.Generator().manual_seed(seed)
    steps = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    dirs = [steps[i] for i in torch.randint(0, 4, (9, ), generator=gen).tolist()]
    ious = (0.40 + 0.09 * torch.rand(9, generator=gen)).tolist()
    boxes = []
    for k, ((dx, dy), iou) in enumerate(zip(dirs, ious)):
        x1, y1, x2, y2 = anchors[loc * 9 + k].tolist()
        d = (x2 - x1 if dx else y2 - y1) * (1 - iou) / (1 + iou)
        boxes.append([x1 + dx * d, y1 + dy * d, x2 + dx * d, y2 + dy * d])
    return boxes


def test_mask_equals_the_authors_rule_on_a_crafted_batch():
    """RetinaNet's 9 anchors: random boxes; an image without gt (all False; the old rule
    kept it all); boxes that put all 9 anchors of location (4, 4) of P3 in the ignore band
    without making any of them a gt's best anchor (dropped); boxes at IoU 0.42 .. 0.48
    with single anchors (low-quality positives)."""
    h = head()
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(6, 2, generator=gen) * 40
    wh = 8 + torch.rand(6, 2, generator=gen) * 40
    random_boxes = torch.cat([xy, (xy + wh).clamp(max=64)], 1).tolist()
    anchors = torch.cat(h.prior_generator.grid_priors(SIZES, device='cpu'))
    loc = 4 * 8 + 4
    shrunk = []
    for index, iou in ((100, 0.42), (300, 0.45), (450, 0.48)):
        x1, y1, x2, y2 = anchors[index].tolist()
        cx, cy, f = (x1 + x2) / 2, (y1 + y2) / 2, iou ** 0.5 / 2
        shrunk.append([cx - f * (x2 - x1), cy - f * (y2 - y1), cx + f * (x2 - x1),
                       cy + f * (y2 - y1)])
    samples = [sample(random_boxes), sample([]), sample(shifted_boxes(anchors, loc, 2735)),
               sample(shrunk)]
    masks = anchor_keep_mask(h, SIZES, samples)
    assert [tuple(m.shape) for m in masks] == [(4, hh * ww) for hh, ww in SIZES]
    ours = torch.cat(masks, 1)
    assert torch.equal(ours, authors_mask(h, samples))
    assert not ours[1].any()  # no gt: the image is skipped
    assert not ours[2, loc] and ours[2].sum() == ours.size(1) - 1  # the one dropped
    band = torch.cat(anchor_keep_mask(h, SIZES, samples, rule='band'), 1)
    assert band[1].all()  # the old rule, kept as an option
    assert not band[2, loc]
    assert torch.equal(band[[0, 2, 3]] | ours[[0, 2, 3]], ours[[0, 2, 3]])  # lshfm keeps more


def test_rule_is_checked():
    with pytest.raises(ValueError, match="rule must be one of \\('lshfm', 'band'\\)"):
        anchor_keep_mask(head(), SIZES, [sample([])], rule='authors')
