"""RoI-level outputs of a two-stage detector, on one shared set of RoIs."""
from dataclasses import dataclass
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.structures.bbox import bbox2roi
from torch import Tensor

from .roi_align_matrix import sparse_roi_align


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


@dataclass
class ExtractedRoIFeatures:
    """RoI features already extracted, ``[R, C, PH, PW]``: given to
    :meth:`RoIHeadRecorder.forward_rois` in place of the FPN levels, it runs the box head
    only (how :func:`forward_rois_jointly` reaches a head through a wrapper of its
    ``forward_rois``, e.g. one that casts the outputs)."""
    bbox_feats: Tensor


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
      :func:`forward_rois_jointly` does the same for several heads on the same RoIs with
      one RoI extraction.

    The classifier input is captured with a forward pre-hook on ``bbox_head.fc_cls``,
    so it is exactly the feature the classifier sees, for any ``ConvFCBBoxHead``; it is
    kept only while recording or inside :meth:`forward_rois` (never at predict time), and
    :meth:`clear` drops everything a step left (the distiller calls it after each step).
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
        self._forwarding = False
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
        if self._recording or self._forwarding:
            self._embedding = inputs[0]

    def clear(self) -> None:
        """Drop the tensors of the last step (sampled RoIs and their outputs)."""
        self.sampled = None
        self._embedding = None

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
        if they require grad, and to the head's parameters if those do.
        ``feats`` may be :class:`ExtractedRoIFeatures` (the RoI extraction done)."""
        if isinstance(feats, ExtractedRoIFeatures):
            return self.forward_extracted(feats.bbox_feats, rois)
        self._forwarding = True
        try:
            results = self.roi_head._bbox_forward(feats, rois)
        finally:
            self._forwarding = False
        embedding, self._embedding = self._embedding, None
        return RoIOutputs(
            rois=rois,
            embedding=embedding,
            cls_score=results['cls_score'],
            bbox_pred=results['bbox_pred'])

    def forward_extracted(self, bbox_feats: Tensor, rois: Tensor) -> RoIOutputs:
        """The box head (after the shared head, if any) on already extracted RoI
        features ``[R, C, PH, PW]``: the second half of :meth:`forward_rois`."""
        self._forwarding = True
        try:
            if self.roi_head.with_shared_head:
                bbox_feats = self.roi_head.shared_head(bbox_feats)
            cls_score, bbox_pred = self.roi_head.bbox_head(bbox_feats)
        finally:
            self._forwarding = False
        embedding, self._embedding = self._embedding, None
        return RoIOutputs(rois=rois, embedding=embedding, cls_score=cls_score,
                          bbox_pred=bbox_pred)

    def extraction_settings(self) -> Optional[tuple]:
        """What determines this head's RoI extraction (strides, level mapping, RoIAlign
        parameters), or ``None`` when :func:`forward_rois_jointly` cannot share it: a
        RoI head that overrides ``_bbox_forward``, an extractor other than mmdet's
        ``SingleRoIExtractor``, or RoI layers other than mmcv's average ``RoIAlign``."""
        from mmcv.ops import RoIAlign
        from mmdet.models.roi_heads import SingleRoIExtractor, StandardRoIHead
        extractor = getattr(self.roi_head, 'bbox_roi_extractor', None)
        if type(self.roi_head)._bbox_forward is not StandardRoIHead._bbox_forward or \
                type(extractor) is not SingleRoIExtractor:
            return None
        layers = []
        for layer in extractor.roi_layers:
            if type(layer) is not RoIAlign or layer.pool_mode != 'avg' or \
                    layer.use_torchvision:
                return None
            layers.append((tuple(layer.output_size), layer.spatial_scale,
                           layer.sampling_ratio, layer.aligned))
        return (tuple(extractor.featmap_strides), extractor.finest_scale, tuple(layers))


def _shared_recorders(forwards: Sequence[Callable]) -> Optional[List[RoIHeadRecorder]]:
    """The recorders behind ``forwards`` if each is a ``RoIHeadRecorder.forward_rois``
    (or a wrapper of one that exposes its ``__self__`` / ``__func__``) and all extract
    RoIs the same way; else ``None``."""
    recorders = []
    for forward in forwards:
        owner = getattr(forward, '__self__', None)
        if not isinstance(owner, RoIHeadRecorder) or \
                getattr(forward, '__func__', None) is not RoIHeadRecorder.forward_rois:
            return None
        recorders.append(owner)
    settings = [r.extraction_settings() for r in recorders]
    if settings[0] is None or any(s != settings[0] for s in settings):
        return None
    return recorders


def extract_rois_jointly(extractor: nn.Module, feature_sets: Sequence[Sequence[Tensor]],
                         rois: Tensor, sparse: Optional[bool] = None) -> List[Tensor]:
    """mmdet's ``SingleRoIExtractor`` forward for several feature sets on the same RoIs,
    with one RoI extraction over their concatenated channels: ``[R, C_k, PH, PW]`` per
    set, equal to ``extractor(feats_k, rois)`` (to summation order).

    With ``sparse`` (default: on CPU) the extraction is one sparse product
    (:func:`sparse_roi_align`); otherwise one mmcv ``RoIAlign`` call per level on the
    channel-concatenated maps (mmcv's CUDA kernel is fast already). As in mmdet,
    every level gets a gradient (zero where no RoI reads), so DDP finds one for every
    parameter upstream.
    """
    num_levels = extractor.num_inputs
    sets = [tuple(feats[:num_levels]) for feats in feature_sets]
    rois = rois.type_as(sets[0][0])
    layers = extractor.roi_layers
    output_size = tuple(layers[0].output_size)
    levels = extractor.map_roi_levels(rois, num_levels) if num_levels > 1 else \
        rois.new_zeros(rois.size(0), dtype=torch.long)
    channels = [feats[0].size(1) for feats in sets]
    if sparse if sparse is not None else sets[0][0].device.type == 'cpu':
        return sparse_roi_align(sets, rois, levels, [layer.spatial_scale for layer in layers],
                                output_size, layers[0].sampling_ratio, layers[0].aligned)
    maps = [torch.cat([feats[level] for feats in sets], 1) for level in range(num_levels)]
    roi_feats = maps[0].new_zeros(rois.size(0), sum(channels), *output_size)
    for level in range(num_levels):
        inds = (levels == level).nonzero(as_tuple=False).squeeze(1)
        if inds.numel() > 0:
            roi_feats[inds] = layers[level](maps[level], rois[inds])
        else:  # mmdet's fallback: keep the level in the graph
            roi_feats = roi_feats + maps[level].sum() * 0.
    return list(torch.split(roi_feats, channels, dim=1))


def forward_rois_jointly(forwards: Sequence[Callable], feature_sets: Sequence[Sequence[Tensor]],
                         rois: Tensor) -> List[RoIOutputs]:
    """``[forward(feats, rois) for forward, feats in zip(forwards, feature_sets)]``, with
    one RoI extraction for all of them (:func:`extract_rois_jointly`, a sparse product)
    when the features are on CPU, every forward is a :meth:`RoIHeadRecorder.forward_rois`
    whose head extracts RoIs the same way and the feature sets have the same levels;
    otherwise one call each through mmdet (same results).
    Each forward is then called with :class:`ExtractedRoIFeatures`."""
    recorders = _shared_recorders(forwards)
    if recorders is not None:
        num_levels = recorders[0].roi_head.bbox_roi_extractor.num_inputs
        shapes = [[(f.size(0), *f.shape[2:], f.dtype, f.device) for f in feats[:num_levels]]
                  for feats in feature_sets]
        # on CPU only: elsewhere mmcv's RoIAlign kernels are fast already and joining
        # the sets would add a transient copy of both (full-size) bridged feature sets
        if all(len(s) == num_levels and s == shapes[0] for s in shapes) and \
                shapes[0][0][-1].type == 'cpu':
            extracted = extract_rois_jointly(recorders[0].roi_head.bbox_roi_extractor,
                                             feature_sets, rois)
            # through each forward, so that a wrapper's output handling still applies
            return [forward(ExtractedRoIFeatures(f), rois)
                    for forward, f in zip(forwards, extracted)]
    return [forward(feats, rois) for forward, feats in zip(forwards, feature_sets)]
