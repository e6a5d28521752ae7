"""Which dense-head locations carry a training signal, from the anchors and the gt."""
from typing import List, Sequence, Tuple

import torch
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

#: ``'lshfm'``: the LSHFM authors' RetinaNet rule; ``'band'``: ignore band only
KEEP_MASK_RULES = ('lshfm', 'band')


def _threshold(value, name: str) -> float:
    if isinstance(value, (tuple, list)):
        raise ValueError(f'anchor keep mask: assigner {name}={value!r} is a range; only a '
                         'single threshold is supported')
    return float(value)


def low_quality_positives(iou: Tensor, min_pos_iou: float, assign_all: bool) -> Tensor:
    """``[A]`` bool: the anchors mmdet's ``MaxIoUAssigner`` with ``match_low_quality``
    makes positive whatever their IoU — for each gt box whose best IoU is
    ``>= min_pos_iou``, the anchor(s) with that best IoU (all ties if ``assign_all``,
    its ``gt_max_assign_all``; else the first). torchvision's ``Matcher`` with
    ``allow_low_quality_matches`` (the LSHFM authors' code) is ``min_pos_iou = 0``, all ties.

    Args:
        iou (Tensor): ``[A, G]`` IoU of every anchor with every gt box (``G >= 1``).
    """
    gt_max, gt_argmax = iou.max(dim=0)
    eligible = gt_max >= min_pos_iou  # [G]
    if assign_all:
        return ((iou == gt_max.unsqueeze(0)) & eligible.unsqueeze(0)).any(dim=1)
    positive = torch.zeros(iou.size(0), dtype=torch.bool, device=iou.device)
    positive[gt_argmax[eligible]] = True
    return positive


def anchor_keep_mask(dense_head, featmap_sizes: Sequence[Tuple[int, int]],
                     data_samples: List, rule: str = 'lshfm') -> Tuple[Tensor, ...]:
    """Per FPN level, ``[B, H_l · W_l]`` bool, True = the location takes part in the loss.

    Rules (thresholds from the head's ``train_cfg.assigner``; an anchor is in the ignore
    band when ``neg_iou_thr <= its max IoU with a gt box < pos_iou_thr``):

    * ``'lshfm'`` (default) — the LSHFM authors' RetinaNet filter (their
      ``retinanet_KD.py``: a location is kept unless the matcher marks all its anchors
      "between thresholds", and an image without gt boxes is skipped): False for
      every location of an image without gt boxes; otherwise False where every anchor
      of the location is in the ignore band **and** none of them is a low-quality
      positive (see :func:`low_quality_positives`; only when the assigner's
      ``match_low_quality`` is on, as in RetinaNet's config), True elsewhere.
    * ``'band'`` — False where every anchor of the location is in the ignore band, True
      elsewhere, every location of an image without gt boxes kept (background only).

    IoUs are over all anchors of the image (every level; no valid-flag filter), as the
    authors' matcher.

    Args:
        dense_head: an anchor-based head (``prior_generator``, ``train_cfg.assigner``).
        featmap_sizes: ``(H_l, W_l)`` of each level.
        data_samples: the batch's ``DetDataSample`` list (``gt_instances.bboxes``).
        rule (str): ``'lshfm'`` or ``'band'``.
    """
    if rule not in KEEP_MASK_RULES:
        raise ValueError(f'anchor keep mask: rule must be one of {KEEP_MASK_RULES}, got '
                         f'{rule!r}')
    assigner = dense_head.train_cfg['assigner']
    pos_thr = _threshold(assigner['pos_iou_thr'], 'pos_iou_thr')
    neg_thr = _threshold(assigner['neg_iou_thr'], 'neg_iou_thr')
    rescue = rule == 'lshfm' and assigner.get('match_low_quality', True)
    min_pos_iou = float(assigner.get('min_pos_iou', 0.0))
    assign_all = bool(assigner.get('gt_max_assign_all', True))
    device = data_samples[0].gt_instances.bboxes.device
    levels = dense_head.prior_generator.grid_priors(featmap_sizes, device=device)
    num_anchors = dense_head.prior_generator.num_base_priors[0]
    anchors = torch.cat(levels)
    locations = [level.size(0) // num_anchors for level in levels]
    masks = []
    for sample in data_samples:
        gt = sample.gt_instances.bboxes
        gt = gt.tensor if hasattr(gt, 'tensor') else gt
        if gt.numel() == 0:
            keep = torch.full((sum(locations), ), rule == 'band', dtype=torch.bool,
                              device=device)
        else:
            iou = bbox_overlaps(anchors, gt)  # [A, G]
            max_iou = iou.max(dim=1).values
            ignored = (max_iou >= neg_thr) & (max_iou < pos_thr)
            if rescue:
                ignored &= ~low_quality_positives(iou, min_pos_iou, assign_all)
            keep = ~ignored.view(-1, num_anchors).all(dim=1)
        masks.append(keep)
    return tuple(m.contiguous() for m in torch.stack(masks).split(locations, dim=1))
