"""Which dense-head locations carry a training signal, from the anchors and the gt."""
from typing import List, Sequence, Tuple

import torch
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor


def _threshold(value, name: str) -> float:
    if isinstance(value, (tuple, list)):
        raise ValueError(f'anchor keep mask: assigner {name}={value!r} is a range; only a '
                         'single threshold is supported')
    return float(value)


def anchor_keep_mask(dense_head, featmap_sizes: Sequence[Tuple[int, int]],
                     data_samples: List) -> Tuple[Tensor, ...]:
    """Per FPN level, ``[B, H_l · W_l]`` bool: False where **every** anchor of the
    location falls in the assigner's ignore band (``neg_iou_thr <= max IoU with a gt box
    < pos_iou_thr``), True elsewhere — LSHFM's location filter for RetinaNet.

    Args:
        dense_head: an anchor-based head (``prior_generator``, ``train_cfg.assigner``).
        featmap_sizes: ``(H_l, W_l)`` of each level.
        data_samples: the batch's ``DetDataSample`` list (``gt_instances.bboxes``).
    """
    assigner = dense_head.train_cfg['assigner']
    pos_thr = _threshold(assigner['pos_iou_thr'], 'pos_iou_thr')
    neg_thr = _threshold(assigner['neg_iou_thr'], 'neg_iou_thr')
    device = data_samples[0].gt_instances.bboxes.device
    anchors = dense_head.prior_generator.grid_priors(featmap_sizes, device=device)
    num_anchors = dense_head.prior_generator.num_base_priors[0]
    per_level = [[] for _ in featmap_sizes]
    for sample in data_samples:
        gt = sample.gt_instances.bboxes
        gt = gt.tensor if hasattr(gt, 'tensor') else gt
        for level, level_anchors in enumerate(anchors):
            if gt.numel() == 0:
                keep = torch.ones(level_anchors.size(0) // num_anchors, dtype=torch.bool,
                                  device=gt.device)
            else:
                max_iou = bbox_overlaps(level_anchors, gt).max(dim=1).values
                ignored = (max_iou >= neg_thr) & (max_iou < pos_thr)
                keep = ~ignored.view(-1, num_anchors).all(dim=1)
            per_level[level].append(keep)
    return tuple(torch.stack(masks) for masks in per_level)
