"""The class each anchor of a dense head is assigned to, by the head's own assigner."""
from typing import List, Sequence, Tuple

from mmdet.models.utils import unpack_gt_instances
from torch import Tensor


def dense_anchor_labels(dense_head, featmap_sizes: Sequence[Tuple[int, int]],
                        data_samples: List) -> Tuple[Tensor, ...]:
    """Per FPN level, ``[B, H_l · W_l · A]`` long labels of every anchor, exactly as the
    head's training targets assign them (``get_anchors`` + ``get_targets``: its assigner,
    sampler and ``allowed_border``): the gt class for positive anchors, ``num_classes``
    for negative, ignored and out-of-image ones. Anchors are in mmdet's order: location
    ``y · W_l + x`` major, its ``A`` anchors minor (the order of the head's flattened
    ``[B, A · C, H, W]`` outputs).

    Args:
        dense_head: an anchor-based head with a ``train_cfg`` (``AnchorHead`` subclasses:
            RetinaNet, ...).
        featmap_sizes: ``(H_l, W_l)`` of each level.
        data_samples: the batch's ``DetDataSample`` list (``gt_instances``, ``pad_shape``).
    """
    if not hasattr(dense_head, 'get_targets') or not hasattr(dense_head, 'get_anchors') \
            or getattr(dense_head, 'assigner', None) is None:
        raise TypeError(
            f'dense anchor labels need an anchor-based head built with a train_cfg '
            f'(assigner), got {type(dense_head).__name__}.')
    gt_instances, gt_instances_ignore, img_metas = unpack_gt_instances(data_samples)
    device = gt_instances[0].bboxes.device
    anchors, valid_flags = dense_head.get_anchors(
        [tuple(size) for size in featmap_sizes], img_metas, device=device)
    targets = dense_head.get_targets(anchors, valid_flags, gt_instances, img_metas,
                                     batch_gt_instances_ignore=gt_instances_ignore)
    return tuple(labels.long() for labels in targets[0])
