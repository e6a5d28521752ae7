"""Distillation between two MMDetection detectors (Faster R-CNN, RetinaNet, ...)."""
import hashlib
from contextlib import ExitStack
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

import torch
import torch.nn as nn
from mmdet.registry import MODELS as MMDET_MODELS
from torch import Tensor

from ..recorders import DenseTargetsRecorder, RoIHeadRecorder, RoIOutputs
from .anchor_labels import dense_anchor_labels
from .anchor_masks import anchor_keep_mask
from .base_distiller import BaseDistiller, DistillStep
from .teacher_cache import build_teacher_cache

ROI_FIELDS = ('embedding', 'cls_score', 'bbox_pred')
DENSE_FIELDS = ('cls_score', 'bbox_pred')


def batch_valid_mask(data_samples: List, inputs: Tensor) -> Tensor:
    """``[B, 1, H, W]`` float mask of the batch input: 1 on each image's real pixels
    (its ``img_shape``), 0 on the zero padding the data preprocessor added."""
    mask = inputs.new_zeros((inputs.size(0), 1) + tuple(inputs.shape[-2:]))
    for i, sample in enumerate(data_samples):
        h, w = sample.metainfo['img_shape'][:2]
        mask[i, :, :h, :w] = 1
    return mask


def detector_num_classes(detector) -> Optional[int]:
    for owner in (getattr(detector, 'roi_head', None), detector):
        head = getattr(owner, 'bbox_head', None)
        if head is not None and hasattr(head, 'num_classes'):
            return head.num_classes
    return None


@MMDET_MODELS.register_module()
class DetectionDistiller(BaseDistiller):
    """Distills a teacher detector into a student detector.

    Sources a loss input may name, besides ``'student.<module path>'`` /
    ``'teacher.<module path>'`` (e.g. ``'student.neck'``: the FPN levels as a tuple;
    ``'teacher.bbox_head.cls_convs.3'``: RetinaNet's cls tower, one tensor per level):

    ==============================  =========================================================
    ``data_samples``                the batch's ``DetDataSample`` list (gt boxes, shapes)
    ``valid_mask``                  ``[B, 1, H, W]`` 1 on real pixels, 0 on batch padding
    ``roi.rois``                    ``[R, 5]`` the student's sampled RoIs
    ``roi.labels``                  ``[R]`` their assigned labels (background = num_classes)
    ``{side}.roi.embedding``        ``[R, D]`` classifier input of the RoI head (fc7)
    ``{side}.roi.cls_score``        ``[R, num_classes + 1]`` RoI logits
    ``{side}.roi.bbox_pred``        ``[R, 4 · num_classes]`` RoI box deltas
    ``{side}.roi_forward``          callable ``(feats, rois) -> RoIOutputs`` of that side's
                                    RoI head (teacher: frozen weights, grad to inputs)
    ``{side}.dense.cls_score``      tuple of ``[B, A · C, H_l, W_l]`` dense-head logits
    ``{side}.dense.bbox_pred``      tuple of ``[B, A · 4, H_l, W_l]`` dense-head deltas
    ``{side}.dense_forward``        callable ``feats -> (cls_scores, bbox_preds)``
    ``dense.keep_mask``             tuple of ``[B, H_l · W_l]`` bool, the LSHFM authors'
                                    location filter: False on images without gt and
                                    where all anchors of a location are in the ignore
                                    band, none a low-quality positive
    ``dense.keep_mask_band``        the same, ignore band only (gt-free images kept)
    ``dense.labels``                tuple of ``[B, H_l · W_l · A]`` long: each anchor's
                                    assigned class by the student head's own assigner
                                    (``num_classes``: negative / ignored)
    ==============================  =========================================================

    The ``roi.*`` sources are computed on the **student's sampled RoIs** on both sides:
    the teacher's RoI extractor and box head run on the teacher's FPN features with the
    student's RoIs. The teacher runs ``extract_feat`` always, its dense head only if a
    source needs it, its RoI head only for ``roi.*`` / ``roi_head.*`` sources — never its
    RPN, assigners, samplers or losses.

    The distiller answers for the student's ``backbone``, ``neck``, ``bbox_head``,
    ``rpn_head`` and ``roi_head`` (:attr:`student_attributes`): the families' runtime
    hooks address them on ``runner.model`` (mmdet's ``YOLOXModeSwitchHook`` sets
    ``model.bbox_head.use_l1``), and reach the student's, never the teacher's.
    ``set_epoch`` (``SetEpochInfoHook``) is passed on to the student. ``EMAHook``
    averages the distiller's parameters and buffers, i.e. the student's and the
    connectors' (the teacher is not among them), and saves the averages as the
    checkpoint's ``state_dict``, so the student exported from it is the EMA student.

    RoI sources need one box head: a multi-stage RoI head (Cascade R-CNN's
    ``CascadeRoIHead``) is refused when the model is built.

    Args:
        teacher_cache (dict | bool, optional): ``dict(max_mib=1024)`` (or ``True``)
            keeps what the teacher computes from each image alone (the recorded outputs
            of its backbone, neck and dense head; its FPN levels too when its RoI head
            runs) and answers images it has seen before from memory — for CPU training
            on small data, where the same augmented image comes back many times
            (:class:`~.teacher_cache.TeacherOutputCache`). Off by default. With
            ``dir=PATH`` the outputs are also written there, under
            :meth:`teacher_namespace`, and runs that share the teacher read each
            other's (the demo's methods and seeds).
        **kwargs: the arguments of :class:`BaseDistiller`.
    """

    task_registry = MMDET_MODELS
    student_attributes = ('backbone', 'neck', 'bbox_head', 'rpn_head', 'roi_head')

    def __init__(self, *args, teacher_cache: Union[dict, bool, None] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher_cache = build_teacher_cache(teacher_cache)

    def _check_compatible(self) -> None:
        n_s, n_t = detector_num_classes(self.student), detector_num_classes(self.teacher)
        if n_s is not None and n_t is not None and n_s != n_t:
            raise ValueError(
                f'student predicts {n_s} classes but the teacher {n_t}: distillation needs '
                'both trained on the same classes; fix num_classes in one of the configs.')

    # ---------------------------------------------------------------- sources
    def _virtual_sources(self) -> Dict[str, Callable[[DistillStep], Any]]:
        sources = super()._virtual_sources()
        sources['valid_mask'] = lambda step: batch_valid_mask(step.data_samples,
                                                              step.inputs)
        sources['roi.rois'] = lambda step: step.student_roi.rois
        sources['roi.labels'] = lambda step: step.student_roi.labels
        for field in ROI_FIELDS:
            sources[f'student.roi.{field}'] = \
                lambda step, f=field: getattr(step.student_roi, f)
            sources[f'teacher.roi.{field}'] = \
                lambda step, f=field: getattr(step.teacher_roi, f)
        sources['student.roi_forward'] = lambda step: self.student_roi.forward_rois
        sources['teacher.roi_forward'] = lambda step: self.teacher_roi.forward_rois
        for i, field in enumerate(DENSE_FIELDS):
            for side in ('student', 'teacher'):
                sources[f'{side}.dense.{field}'] = lambda step, s=side, i=i: tuple(
                    self._recorder(s).get('bbox_head')[i])
        for name, rule in (('dense.keep_mask', 'lshfm'), ('dense.keep_mask_band', 'band')):
            sources[name] = lambda step, rule=rule: anchor_keep_mask(
                self.student.bbox_head,
                [c.shape[-2:] for c in self._recorder('student').get('bbox_head')[0]],
                step.data_samples, rule)
        sources['dense.labels'] = self._dense_labels
        sources['student.dense_forward'] = lambda step: self.student.bbox_head
        sources['teacher.dense_forward'] = lambda step: self.teacher.bbox_head
        return sources

    def _recorder(self, side: str):
        return self.student_recorder if side == 'student' else self.teacher_recorder

    def _virtual_source_paths(self, source: str) -> Dict[str, Set[str]]:
        if source.startswith('roi.') or '.roi.' in source or source.endswith('roi_forward'):
            self._ensure_roi_recorders()
        elif 'dense.' in source or source.endswith('dense_forward'):
            for side, model in (('student', self.student), ('teacher', self.teacher)):
                if not hasattr(model, 'bbox_head'):
                    raise ValueError(f'source {source!r} needs a dense head (`bbox_head`), '
                                     f'which the {side} ({type(model).__name__}) lacks.')
            if source == 'dense.labels' and hasattr(self.student.bbox_head, 'get_targets') \
                    and getattr(self, 'student_targets', None) is None:
                self.student_targets = DenseTargetsRecorder(self.student.bbox_head)
            if source in ('dense.keep_mask', 'dense.keep_mask_band', 'dense.labels'):
                return {'student': {'bbox_head'}}
            if '.dense.' in source:
                return {'student': {'bbox_head'}, 'teacher': {'bbox_head'}}
        return {}

    def _ensure_roi_recorders(self) -> None:
        if getattr(self, 'student_roi', None) is None:
            for side, model in (('student', self.student), ('teacher', self.teacher)):
                roi_head = getattr(model, 'roi_head', None)
                if isinstance(getattr(roi_head, 'bbox_head', None), nn.ModuleList):
                    raise ValueError(
                        f'RoI sources (roi.*, {side}.roi.*, {side}.roi_forward) compare '
                        'the two networks on one set of RoIs through one box head, but the '
                        f'{side} has a {type(roi_head).__name__} with '
                        f'{len(roi_head.bbox_head)} box heads (Cascade R-CNN), each on '
                        'its own refined RoIs: which stage they would mean is not defined, '
                        'so mmkd refuses them. Distil the FPN instead (student.neck / '
                        'teacher.neck: FeatureMSELoss, PKDLoss, AMDLoss).')
            self.student_roi = RoIHeadRecorder(self.student, 'student')
            self.teacher_roi = RoIHeadRecorder(self.teacher, 'teacher')

    @property
    def _uses_roi(self) -> bool:
        return getattr(self, 'student_roi', None) is not None

    def _release_step(self) -> None:
        super()._release_step()
        if self._uses_roi:
            self.student_roi.clear()
            self.teacher_roi.clear()
        if getattr(self, 'student_targets', None) is not None:
            self.student_targets.labels = None

    def _dense_labels(self, step: DistillStep) -> Tuple[Tensor, ...]:
        """``dense.labels``: the labels the student head's own loss pass assigned
        (:class:`DenseTargetsRecorder`), or, for a head whose loss did not hand over
        ``[B, H_l·W_l·A]`` labels per level, the same assignment run again."""
        sizes = [c.shape[-2:] for c in self._recorder('student').get('bbox_head')[0]]
        recorder = getattr(self, 'student_targets', None)
        tapped = None if recorder is None else recorder.labels
        batch = len(step.data_samples)
        if tapped is not None and len(tapped) == len(sizes) and all(
                labels.dim() == 2 and labels.shape[0] == batch and
                labels.shape[1] % (h * w) == 0 for labels, (h, w) in zip(tapped, sizes)):
            return tapped
        return dense_anchor_labels(self.student.bbox_head, sizes, step.data_samples)

    # ---------------------------------------------------------------- training
    def _student_loss(self, inputs: Tensor, data_samples: List) -> Dict[str, Tensor]:
        with ExitStack() as stack:
            for recorder in (getattr(self, 'student_roi', None),
                             getattr(self, 'student_targets', None)):
                if recorder is not None:
                    stack.enter_context(recorder.recording())
            return super()._student_loss(inputs, data_samples)

    @property
    def _teacher_runs_roi_head(self) -> bool:
        return self._uses_roi or any(p.startswith('roi_head.') for p in self.teacher_paths)

    def _teacher_image_pass(self, inputs: Tensor) -> Tuple[Tuple[Tensor, ...], Dict]:
        """What the teacher computes from the images alone: ``extract_feat`` (and its
        dense head, if a source needs it); returns the levels and what the recorder
        captured meanwhile (the levels are only handed on for the RoI head: the cache
        keeps nothing else twice)."""
        feats = self.teacher.extract_feat(self.teacher_input(inputs))
        if any(p == 'bbox_head' or p.startswith('bbox_head.') for p in self.teacher_paths):
            self.teacher.bbox_head(feats)
        return (feats if self._teacher_runs_roi_head else ()), \
            self.teacher_recorder.snapshot()

    def teacher_namespace(self) -> str:
        """A digest of what the teacher's image pass depends on besides the image: the
        teacher's architecture and weights (after ``teacher_ckpt`` is loaded), the input
        renormalisation, the teacher's precision and the recorded outputs. Runs whose
        digests match may share teacher outputs (``teacher_cache.dir``)."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(repr((type(self.teacher).__name__, str(self.teacher),
                            sorted(self.teacher_paths), self._teacher_runs_roi_head,
                            self.teacher_precision.name)).encode())
        tensors = list(self.teacher.state_dict().items()) + [
            ('teacher_input.' + name, buffer)
            for name, buffer in self.teacher_input.named_buffers()]
        for name, tensor in tensors:
            tensor = tensor.detach().cpu().contiguous()
            digest.update(repr((name, tuple(tensor.shape), str(tensor.dtype))).encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def _run_teacher(self, step: DistillStep) -> None:
        if self.teacher_cache is None:
            feats, _ = self._teacher_image_pass(step.inputs)
        else:
            if self.teacher_cache.dir is not None and self.teacher_cache.namespace is None:
                self.teacher_cache.bind(self.teacher_namespace())
            feats, records = self.teacher_cache(step.inputs, self._teacher_image_pass)
            self.teacher_recorder.restore(records)
        if self._teacher_runs_roi_head:
            self._ensure_roi_recorders()
            step.student_roi = self.student_roi.sampled
            if step.student_roi is None:
                raise RuntimeError('the student RoI head produced no sampled RoIs this step')
            step.teacher_roi = self.teacher_roi.forward_rois(feats, step.student_roi.rois)


__all__ = ['DetectionDistiller', 'batch_valid_mask', 'RoIOutputs']
