"""RoI-level outputs of a two-stage detector, on one shared set of RoIs."""
from dataclasses import dataclass
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.structures.bbox import bbox2roi
from torch import Tensor


@dataclass
class RoIOutputs:
    """What a box head computes for a set of RoIs.

    Attributes:
        rois (Tensor): ``[R, 5]`` boxes ``(batch_idx, x1, y1, x2, y2)`` in input pixels.
        embedding (Tensor): ``[R, D]`` the classifier's input ("fc7": the output of the
            shared FCs after ReLU, D = 1024 for ``Shared2FCBBoxHead``).
        cls_score (Tensor): ``[R, num_classes + 1]`` classification logits.
        bbox_pred (Tensor): ``[R, 4 * num_classes]`` (class-specific) or ``[R, 4]``
            box deltas.
        labels (Tensor, optional): ``[R]`` assigned labels of the RoIs, background =
            ``num_classes``; only known for the student's sampled RoIs.
    """
    rois: Tensor
    embedding: Tensor
    cls_score: Tensor
    bbox_pred: Tensor
    labels: Optional[Tensor] = None


def sampled_roi_labels(sampling_results: Sequence, num_classes: int) -> Tensor:
    """Assigned labels ``[R]`` of sampled RoIs, in ``bbox2roi`` order.

    mmdet orders each image's sampled priors as positives then negatives, and the
    bbox targets follow that order: positives get their gt label, negatives the
    background index ``num_classes``.
    """
    labels = []
    for res in sampling_results:
        neg = res.pos_gt_labels.new_full((res.neg_priors.size(0), ), num_classes)
        labels.append(torch.cat([res.pos_gt_labels, neg]))
    return torch.cat(labels)


class RoIHeadRecorder:
    """Observes a ``StandardRoIHead`` and re-runs it on other RoIs.

    * While :meth:`recording`, the head's own training pass (``bbox_loss``) is tapped: the
      sampled RoIs, their labels, the logits, deltas and classifier input are kept as
      :class:`RoIOutputs` in :attr:`sampled`.
    * :meth:`forward_rois` runs the RoI extractor and box head on given features and
      RoIs (no sampling, no loss): this is how the teacher describes the student's RoIs.

    The classifier input is captured with a forward pre-hook on ``bbox_head.fc_cls``,
    so it is exactly the feature the classifier sees, for any ``ConvFCBBoxHead``.
    """

    def __init__(self, detector: nn.Module, owner: str = 'model') -> None:
        roi_head = getattr(detector, 'roi_head', None)
        if roi_head is None or not hasattr(roi_head, '_bbox_forward') \
                or not hasattr(getattr(roi_head, 'bbox_head', None), 'fc_cls'):
            raise TypeError(
                f'{owner} ({type(detector).__name__}) has no StandardRoIHead with a '
                '`bbox_head.fc_cls`; RoI sources (roi.*) need a two-stage detector '
                'such as Faster R-CNN.')
        self.owner = owner
        self.roi_head = roi_head
        self.num_classes: int = roi_head.bbox_head.num_classes
        self.sampled: Optional[RoIOutputs] = None
        self._recording = False
        self._embedding: Optional[Tensor] = None
        roi_head.bbox_head.fc_cls.register_forward_pre_hook(self._keep_classifier_input)
        original_bbox_loss = roi_head.bbox_loss

        def bbox_loss_tap(x: Tuple[Tensor], sampling_results: List) -> dict:
            results = original_bbox_loss(x, sampling_results)
            if self._recording:
                self.sampled = RoIOutputs(
                    rois=bbox2roi([res.priors for res in sampling_results]),
                    embedding=self._embedding,
                    cls_score=results['cls_score'],
                    bbox_pred=results['bbox_pred'],
                    labels=sampled_roi_labels(sampling_results, self.num_classes))
            return results

        # An instance attribute shadows the method for this head only.
        roi_head.bbox_loss = bbox_loss_tap

    def _keep_classifier_input(self, module: nn.Module, inputs: Tuple[Tensor]) -> None:
        self._embedding = inputs[0]

    @contextmanager
    def recording(self) -> Iterator['RoIHeadRecorder']:
        self.sampled = None
        self._recording = True
        try:
            yield self
        finally:
            self._recording = False
            self._embedding = None

    def forward_rois(self, feats: Tuple[Tensor], rois: Tensor) -> RoIOutputs:
        """Run the RoI extractor + box head on ``feats`` (FPN levels, each
        ``[B, C, H_l, W_l]``) for ``rois`` ``[R, 5]``. Gradients flow to ``feats``
        if they require grad, and to the head's parameters if those do."""
        results = self.roi_head._bbox_forward(feats, rois)
        embedding, self._embedding = self._embedding, None
        return RoIOutputs(
            rois=rois,
            embedding=embedding,
            cls_score=results['cls_score'],
            bbox_pred=results['bbox_pred'])
