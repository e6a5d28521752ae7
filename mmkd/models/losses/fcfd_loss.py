"""Function-consistent feature distillation (FCFD) for detectors.

"Function-Consistent Feature Distillation" (Liu, Kan, Shan, Chen; ICLR 2023,
arXiv 2304.11832).

L2 between features treats every direction alike, but the layers after them do not. FCFD
also asks the features to *function* alike: the student's FPN features, mapped by a
bridge ``B_s→t`` into the teacher's space and run through the teacher's later layers,
must produce the teacher's outputs; the teacher's features, bridged the other way
(``B_t→s``) and run through the student's later layers, must too. With ``s``/``t`` the
plain student/teacher outputs, ``st`` = teacher head(``B_s→t``(student feats)) and
``ts`` = student head(``B_t→s``(teacher feats))::

    loss = app_weight · Σ_levels MSE(B_s→t(P_s), P_t)
         + Σ_{x ∈ s, st, ts} kl_weight · KL_T(z_t ‖ z_x) + reg_weight · MSE(δ_x, δ_t)

* :class:`FCFDRoILoss` (Faster R-CNN, the paper's detection setting): "later layers" =
  the RoI head (RoI extractor → shared FCs → classifier + regressor), all evaluated on the
  student's sampled RoIs; softmax KL over the ``num_classes + 1`` logits.
* :class:`FCFDDenseLoss` (RetinaNet; **mmkd's extension**, not in the paper): "later
  layers" = the dense head (cls / reg towers and predictors, on every FPN level);
  binary (sigmoid) KL per anchor × class.

The bridges (3×3 conv without bias + BN, Kaiming init) belong to the loss: trained with the
student, saved for resume, dropped when the student is exported. Gradients of the ``st``
terms flow *through* the frozen teacher head (its parameters have ``requires_grad=False``
and get no gradient) into ``B_s→t`` and the student; the ``ts`` terms train the student's
head and ``B_t→s``. ``forward`` returns the weighted terms as a dict (``app``, ``kl_s``,
``reg_s``, ``kl_st``, ``reg_st``, ``kl_ts``, ``reg_ts``) whose sum is the loss; the
distiller sums them and logs each one.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import MODELS
from ..connectors.connectors import ConvBNConnector
from ..recorders.roi_recorder import forward_rois_jointly
from .feature_mse_loss import feature_mse_loss
from .kd_loss import kd_loss

#: the three function-consistency paths, in logging order
PATHS = ('s', 'st', 'ts')


# ------------------------------------------------------------------------ functional core
def fcfd_appearance_loss(bridged_student_feats: Sequence[Tensor],
                         teacher_feats: Sequence[Tensor],
                         valid_mask: Optional[Tensor] = None) -> Tensor:
    """``Σ_levels MSE(B_s→t(P_s), P_t)``: element-mean MSE per level, summed over levels.

    Args:
        bridged_student_feats: per level ``[B, C_t, H_l, W_l]``, the student's features
            after ``B_s→t``.
        teacher_feats: per level ``[B, C_t, H_l, W_l]``; detached here.
        valid_mask (Tensor, optional): ``[B, 1, H, W]`` 1 on real pixels, 0 on the batch
            padding (see :func:`feature_mse_loss`); ``None`` averages over everything,
            as the authors do.

    Returns:
        Tensor: scalar, fp32.
    """
    if len(bridged_student_feats) != len(teacher_feats):
        raise ValueError(f'FCFD: {len(bridged_student_feats)} student levels but '
                         f'{len(teacher_feats)} teacher levels')
    return sum(feature_mse_loss(s, t, valid_mask)
               for s, t in zip(bridged_student_feats, teacher_feats))


def fcfd_roi_terms(cls_score: Tensor,
                   bbox_pred: Tensor,
                   teacher_cls_score: Tensor,
                   teacher_bbox_pred: Tensor,
                   temperature: float = 1.0) -> Tuple[Tensor, Tensor]:
    """Function consistency of one RoI-head path with the teacher's.

    Args:
        cls_score (Tensor): ``[R, num_classes + 1]`` logits of the path.
        bbox_pred (Tensor): ``[R, 4 · num_classes]`` (or ``[R, 4]``) box deltas.
        teacher_cls_score (Tensor): ``[R, num_classes + 1]`` teacher logits (targets,
            detached).
        teacher_bbox_pred (Tensor): same shape as ``bbox_pred`` (targets, detached).
        temperature (float): T of the KL.

    Returns:
        tuple: ``KL(softmax(z_t/T) ‖ softmax(z/T)) · T²`` (summed over classes, averaged
        over RoIs) and ``MSE(δ, δ_t)`` (element mean), both fp32 scalars.
    """
    if bbox_pred.shape != teacher_bbox_pred.shape:
        raise ValueError(
            f'FCFD: box deltas {tuple(bbox_pred.shape)} and teacher box deltas '
            f'{tuple(teacher_bbox_pred.shape)} differ; student and teacher need the same '
            'classes and the same reg_class_agnostic.')
    kl = kd_loss(cls_score, teacher_cls_score, temperature, mode='softmax')
    reg = F.mse_loss(bbox_pred.float(), teacher_bbox_pred.detach().float())
    return kl, reg


def _check_dense_levels(cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor],
                        teacher_cls_scores: Sequence[Tensor],
                        teacher_bbox_preds: Sequence[Tensor],
                        masks: Optional[Sequence[Tensor]]) -> None:
    num_levels = len(teacher_cls_scores)
    if not (len(cls_scores) == len(bbox_preds) == len(teacher_bbox_preds) == num_levels):
        raise ValueError(f'FCFD dense: {len(cls_scores)} / {len(bbox_preds)} levels of '
                         f'student outputs but {num_levels} / {len(teacher_bbox_preds)} '
                         'of teacher outputs')
    if masks is not None and len(masks) != num_levels:
        raise ValueError(f'FCFD dense: {len(masks)} mask levels for {num_levels} levels')
    for level in range(num_levels):
        s_cls, t_cls = cls_scores[level], teacher_cls_scores[level]
        s_reg, t_reg = bbox_preds[level], teacher_bbox_preds[level]
        if s_reg.shape != t_reg.shape:
            raise ValueError(f'FCFD dense: deltas {tuple(s_reg.shape)} vs teacher '
                             f'{tuple(t_reg.shape)} on level {level}: the heads need the '
                             'same anchors')
        if s_cls.shape != t_cls.shape:
            raise ValueError(f'FCFD dense: logits {tuple(s_cls.shape)} vs teacher '
                             f'{tuple(t_cls.shape)} on level {level}: same classes and '
                             'anchors needed')
        if masks is not None:
            hw = s_cls.shape[-2] * s_cls.shape[-1]
            if tuple(masks[level].shape) != (s_cls.size(0), hw):
                raise ValueError(f'FCFD dense: mask of level {level} must be [B, H·W] = '
                                 f'{[s_cls.size(0), hw]}, got {list(masks[level].shape)}')


def _location_weights(maps: Sequence[Tensor], masks: Optional[Sequence[Tensor]]) -> Tensor:
    """``[B, S]`` (``S = Σ_l H_l·W_l``) weights that turn a sum over elements into the
    per-level element means, summed over levels: ``1 / (B · H_l · W_l · C)`` on level
    ``l`` (``C`` = channels of ``maps``), or with ``masks`` ``m / max(Σ m · C, 1)`` (the
    mean over kept locations; 0 on a level with none kept)."""
    weights = []
    for level, m in enumerate(maps):
        batch, channels, hw = m.size(0), m.size(1), m.shape[-2] * m.shape[-1]
        if masks is None:
            weights.append(m.new_full((batch, hw), 1.0 / (batch * hw * channels),
                                      dtype=torch.float32 if m.dtype != torch.float64
                                      else m.dtype))
        else:
            keep = masks[level].to(torch.float64 if m.dtype == torch.float64
                                   else torch.float32)
            weights.append(keep / (keep.sum() * channels).clamp(min=1.0))
    return torch.cat(weights, 1)


def _stacked_levels(paths: Sequence[Sequence[Tensor]]) -> Tensor:
    """``[B, C, P, S]``: path ``p``'s levels ``[B, C, H_l, W_l]`` flattened and
    concatenated along ``S``, the ``P`` paths side by side (one copy), in fp32 (or
    float64)."""
    flat = torch.cat([m.flatten(2) for maps in paths for m in maps], 2)
    batch, channels = flat.shape[:2]
    flat = flat.view(batch, channels, len(paths), -1)
    return flat if flat.dtype == torch.float64 else flat.float()


def fcfd_dense_paths(paths: Sequence[Tuple[Sequence[Tensor], Sequence[Tensor]]],
                     teacher_cls_scores: Sequence[Tensor],
                     teacher_bbox_preds: Sequence[Tensor],
                     temperature: float = 1.0,
                     masks: Optional[Sequence[Tensor]] = None) -> List[Tuple[Tensor, Tensor]]:
    """:func:`fcfd_dense_terms` of several paths against the same teacher outputs, all
    levels and paths in one computation (the teacher's probabilities computed once).

    Args:
        paths: per path ``(cls_scores, bbox_preds)``, each per level
            ``[B, A · C, H_l, W_l]`` / ``[B, A · 4, H_l, W_l]``.
        teacher_cls_scores / teacher_bbox_preds, temperature, masks: as in
            :func:`fcfd_dense_terms`.

    Returns:
        list: per path ``(KL, MSE)``, fp32 scalars.
    """
    for cls_scores, bbox_preds in paths:
        _check_dense_levels(cls_scores, bbox_preds, teacher_cls_scores, teacher_bbox_preds,
                            masks)
    T = temperature
    s = _stacked_levels([cls for cls, _ in paths]) / T  # [B, K, P, S]
    t = _stacked_levels([[c.detach() for c in teacher_cls_scores]]) / T  # [B, K, 1, S]
    p_t = torch.sigmoid(t)
    # KL(Bern(p_t) ‖ Bern(p_s)) term by term in log-sigmoids (never rounds below zero)
    kl_map = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + \
        (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    w_cls = _location_weights(teacher_cls_scores, masks)[:, None, None]  # [B, 1, 1, S]
    kl = (kl_map * w_cls).sum((0, 1, 3)) * T**2  # [P]
    d = _stacked_levels([reg for _, reg in paths])
    d_t = _stacked_levels([[r.detach() for r in teacher_bbox_preds]])
    w_reg = _location_weights(teacher_bbox_preds, masks)[:, None, None]
    reg = ((d - d_t).pow(2) * w_reg).sum((0, 1, 3))
    return [(kl[p], reg[p]) for p in range(len(paths))]


def fcfd_dense_terms(cls_scores: Sequence[Tensor],
                     bbox_preds: Sequence[Tensor],
                     teacher_cls_scores: Sequence[Tensor],
                     teacher_bbox_preds: Sequence[Tensor],
                     temperature: float = 1.0,
                     masks: Optional[Sequence[Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """Function consistency of one dense-head path with the teacher's, over FPN levels.

    Per level: the binary KL ``KL(Bern(σ(z_t/T)) ‖ Bern(σ(z/T))) · T²`` of every
    anchor × class logit (mean over elements, as ``kd_loss(..., mode='sigmoid')``) and the
    MSE of every anchor's deltas (mean over elements); both summed over levels. With
    ``masks`` the means run over the kept locations only (a level with none kept adds 0).

    Args:
        cls_scores: per level ``[B, A · C, H_l, W_l]`` logits of the path.
        bbox_preds: per level ``[B, A · 4, H_l, W_l]`` deltas of the path.
        teacher_cls_scores / teacher_bbox_preds: same shapes, targets (detached).
        temperature (float): T of the KL.
        masks: optional, per level ``[B, H_l · W_l]`` bool / float (1 = keep).

    Returns:
        tuple: (KL, MSE), fp32 scalars.
    """
    return fcfd_dense_paths([(cls_scores, bbox_preds)], teacher_cls_scores,
                            teacher_bbox_preds, temperature, masks)[0]


# ------------------------------------------------------------------------ modules
class _FCFDBase(nn.Module):
    """Bridges and weights shared by the RoI and dense variants."""

    def __init__(self,
                 in_channels: int = 256,
                 teacher_channels: Optional[int] = None,
                 num_levels: int = 5,
                 num_t2s_levels: Optional[int] = None,
                 temperature: float = 1.0,
                 app_weight: float = 1.0,
                 kl_weight: float = 1.0,
                 reg_weight: float = 1.0,
                 loss_weight: float = 1.0,
                 return_parts: bool = True,
                 app_levels: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        teacher_channels = in_channels if teacher_channels is None else teacher_channels
        app_levels = tuple(range(num_levels)) if app_levels is None else tuple(app_levels)
        if not app_levels or any(not 0 <= i < num_levels for i in app_levels) or len(
                set(app_levels)) != len(app_levels):
            raise ValueError(f'{type(self).__name__}: app_levels={list(app_levels)} must be '
                             f'distinct level indices in 0..{num_levels - 1} '
                             f'(num_levels={num_levels}), e.g. (0, 1, 2)')
        num_t2s_levels = num_levels if num_t2s_levels is None else num_t2s_levels
        if not 0 < num_t2s_levels <= num_levels:
            raise ValueError(f'{type(self).__name__}: the t->s bridges cover the first '
                             f'{num_t2s_levels} of num_levels={num_levels} levels; '
                             f'use 1..{num_levels}')
        if temperature <= 0:
            raise ValueError(f'{type(self).__name__}: temperature must be > 0, '
                             f'got {temperature}')
        self.in_channels = in_channels
        self.teacher_channels = teacher_channels
        self.num_levels = num_levels
        self.temperature = temperature
        self.app_weight = app_weight
        self.kl_weight = kl_weight
        self.reg_weight = reg_weight
        self.loss_weight = loss_weight
        self.return_parts = return_parts
        #: the levels of the appearance MSE (the function terms use every level)
        self.app_levels = app_levels
        #: B_s→t, one per FPN level
        self.s2t = nn.ModuleList([ConvBNConnector(in_channels, teacher_channels)
                                  for _ in range(num_levels)])
        #: B_t→s, one per level the student's later layers read (every bridge must get a
        #: gradient each step, or DDP without find_unused_parameters fails)
        self.t2s = nn.ModuleList([ConvBNConnector(teacher_channels, in_channels)
                                  for _ in range(num_t2s_levels)])

    def _check_levels(self, student_feats: Sequence[Tensor],
                      teacher_feats: Sequence[Tensor]) -> None:
        name = type(self).__name__
        for what, feats in (('student', student_feats), ('teacher', teacher_feats)):
            if not isinstance(feats, (tuple, list)) or len(feats) != self.num_levels:
                got = len(feats) if isinstance(feats, (tuple, list)) else type(feats).__name__
                raise ValueError(f'{name}: {what}_feats must be the {self.num_levels} FPN '
                                 f"levels (e.g. '{what}.neck'), got {got}; set num_levels")

    def _bridge(self, student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]
                ) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
        """(B_s→t(P_s) per level, B_t→s(P_t) per bridged level)."""
        self._check_levels(student_feats, teacher_feats)
        to_teacher = tuple(b(f) for b, f in zip(self.s2t, student_feats))
        to_student = tuple(b(f.detach()) for b, f in zip(self.t2s, teacher_feats))
        return to_teacher, to_student

    def _appearance(self, to_teacher: Sequence[Tensor], teacher_feats: Sequence[Tensor],
                    valid_mask: Optional[Tensor]) -> Tensor:
        """The appearance MSE on ``app_levels`` of the bridged student features."""
        return fcfd_appearance_loss([to_teacher[i] for i in self.app_levels],
                                    [teacher_feats[i] for i in self.app_levels], valid_mask)

    def _collect(self, app: Tensor, terms: Dict[str, Tuple[Tensor, Tensor]]
                 ) -> Union[Tensor, Dict[str, Tensor]]:
        parts = {'app': self.loss_weight * self.app_weight * app}
        for path in PATHS:
            kl, reg = terms[path]
            parts[f'kl_{path}'] = self.loss_weight * self.kl_weight * kl
            parts[f'reg_{path}'] = self.loss_weight * self.reg_weight * reg
        return parts if self.return_parts else sum(parts.values())


@MODELS.register_module()
class FCFDRoILoss(_FCFDBase):
    """FCFD on a two-stage detector's RoI head (Faster R-CNN), on the student's sampled
    RoIs. See the module docstring for the loss.

    Wiring (``inputs`` of the loss binding)::

        inputs=dict(student_feats='student.neck', teacher_feats='teacher.neck',
                    rois='roi.rois',
                    student_cls='student.roi.cls_score',   # pass 1: the student's own
                    student_reg='student.roi.bbox_pred',   #   training pass, reused
                    teacher_cls='teacher.roi.cls_score',   # pass 2: no grad
                    teacher_reg='teacher.roi.bbox_pred',
                    student_roi_forward='student.roi_forward',
                    teacher_roi_forward='teacher.roi_forward')

    Args:
        in_channels (int): FPN channels of the student (256 in mmdet's configs).
        teacher_channels (int, optional): FPN channels of the teacher; defaults to
            ``in_channels``.
        num_levels (int): FPN levels (5: P2–P6); one ``B_s→t`` each.
        num_roi_levels (int): levels the RoI extractor reads (its ``featmap_strides``,
            4: P2–P5); one ``B_t→s`` each. The teacher's extractor is checked against it
            when the teacher is loaded.
        temperature (float): T of the KL. Defaults to 1.
        app_weight, kl_weight, reg_weight (float): weights of the appearance term, of
            each KL and of each box-delta MSE. Default 1 (the authors').
        loss_weight (float): multiplies everything.
        return_parts (bool): return the weighted terms as a dict (their sum is the loss)
            instead of the total.
        app_levels (sequence of int, optional): the levels of the appearance MSE;
            ``None`` (default, the authors'): all ``num_levels``. The function terms
            always use every level.
    """

    def __init__(self,
                 in_channels: int = 256,
                 teacher_channels: Optional[int] = None,
                 num_levels: int = 5,
                 num_roi_levels: int = 4,
                 temperature: float = 1.0,
                 app_weight: float = 1.0,
                 kl_weight: float = 1.0,
                 reg_weight: float = 1.0,
                 loss_weight: float = 1.0,
                 return_parts: bool = True,
                 app_levels: Optional[Sequence[int]] = None) -> None:
        super().__init__(in_channels, teacher_channels, num_levels, num_roi_levels,
                         temperature, app_weight, kl_weight, reg_weight, loss_weight,
                         return_parts, app_levels)
        self.num_roi_levels = num_roi_levels

    def init_from_teacher(self, teacher: nn.Module) -> None:
        """Check the bridges against the teacher (called when its checkpoint is loaded)."""
        extractor = getattr(getattr(teacher, 'roi_head', None), 'bbox_roi_extractor', None)
        num_inputs = getattr(extractor, 'num_inputs', None)
        if num_inputs is not None and num_inputs != self.num_roi_levels:
            raise ValueError(
                f'FCFDRoILoss: the teacher RoI extractor reads {num_inputs} FPN levels but '
                f'num_roi_levels={self.num_roi_levels}; set num_roi_levels={num_inputs}.')
        out_channels = getattr(getattr(teacher, 'neck', None), 'out_channels', None)
        if isinstance(out_channels, int) and out_channels != self.teacher_channels:
            raise ValueError(
                f'FCFDRoILoss: the teacher FPN has {out_channels} channels but the bridges '
                f'were built for {self.teacher_channels}; set teacher_channels (or '
                f'in_channels) to {out_channels}.')

    def forward(self,
                student_feats: Sequence[Tensor],
                teacher_feats: Sequence[Tensor],
                rois: Tensor,
                student_cls: Tensor,
                student_reg: Tensor,
                teacher_cls: Tensor,
                teacher_reg: Tensor,
                student_roi_forward: Callable,
                teacher_roi_forward: Callable,
                valid_mask: Optional[Tensor] = None) -> Union[Tensor, Dict[str, Tensor]]:
        """
        Args:
            student_feats / teacher_feats: ``num_levels`` FPN levels, each
                ``[B, C, H_l, W_l]``.
            rois (Tensor): ``[R, 5]`` the student's sampled RoIs.
            student_cls / student_reg: ``[R, num_classes + 1]`` / ``[R, 4 · num_classes]``
                the student's own RoI outputs on ``rois`` (pass 1).
            teacher_cls / teacher_reg: the same from the teacher (pass 2, targets).
            student_roi_forward / teacher_roi_forward: ``(feats, rois) -> RoIOutputs``
                (``.cls_score``, ``.bbox_pred``); the teacher's has frozen parameters but
                passes gradients to its input features.
            valid_mask (Tensor, optional): ``[B, 1, H, W]`` restricts the appearance MSE to
                real pixels (not used by the authors).

        Returns:
            dict of weighted fp32 scalar terms (sum = loss), or the loss if
            ``return_parts=False``.
        """
        if rois.dim() != 2 or rois.size(-1) != 5:
            raise ValueError(f"FCFDRoILoss: rois must be [R, 5] (wire 'roi.rois'), got "
                             f'{tuple(rois.shape)}')
        to_teacher, to_student = self._bridge(student_feats, teacher_feats)
        app = self._appearance(to_teacher, teacher_feats, valid_mask)
        # pass 3 (st, with grad through the teacher) and pass 4 (ts), with one RoI
        # extraction over both bridged feature sets when the heads allow it
        st, ts = forward_rois_jointly([teacher_roi_forward, student_roi_forward],
                                      [to_teacher, to_student], rois)
        T = self.temperature
        terms = {
            's': fcfd_roi_terms(student_cls, student_reg, teacher_cls, teacher_reg, T),
            'st': fcfd_roi_terms(st.cls_score, st.bbox_pred, teacher_cls, teacher_reg, T),
            'ts': fcfd_roi_terms(ts.cls_score, ts.bbox_pred, teacher_cls, teacher_reg, T),
        }
        return self._collect(app, terms)


@MODELS.register_module()
class FCFDDenseLoss(_FCFDBase):
    """FCFD on a dense (one-stage) head such as RetinaNet's — **mmkd's extension**; the
    paper only distils Faster R-CNN. See the module docstring for the loss.

    The dense head reads every FPN level, so both bridges exist on every level. ``st`` =
    teacher head(``B_s→t``(P_s)), ``ts`` = student head(``B_t→s``(P_t)); KL in the binary
    (sigmoid) form per anchor × class (RetinaNet's classifier), MSE on all anchors'
    deltas; per level element means, summed over levels.

    Location filter (default off, i.e. every location counts, as FCFD's RoI loss counts
    background RoIs): ``mask`` (e.g. wired to ``'dense.keep_mask'``: drops locations whose
    anchors are all in the assigner's ignore band) and/or ``score_thr`` (keep a location
    where the teacher's highest class probability over its anchors is ≥ ``score_thr``:
    "foreground-ish"); both restrict the KL and MSE of all three paths.

    Wiring::

        inputs=dict(student_feats='student.neck', teacher_feats='teacher.neck',
                    student_cls='student.dense.cls_score',
                    student_reg='student.dense.bbox_pred',
                    teacher_cls='teacher.dense.cls_score',
                    teacher_reg='teacher.dense.bbox_pred',
                    student_dense_forward='student.dense_forward',
                    teacher_dense_forward='teacher.dense_forward')

    Args:
        in_channels, teacher_channels, num_levels, temperature, app_weight, kl_weight,
        reg_weight, loss_weight, return_parts, app_levels: as in :class:`FCFDRoILoss`.
            The sigmoid KL is a mean over anchor × class elements; ``kl_weight =
            num_classes`` makes it a sum over classes, as the KD baselines' RetinaNet
            configs do.
        score_thr (float, optional): teacher-score location filter (see above).
    """

    def __init__(self,
                 in_channels: int = 256,
                 teacher_channels: Optional[int] = None,
                 num_levels: int = 5,
                 temperature: float = 1.0,
                 app_weight: float = 1.0,
                 kl_weight: float = 1.0,
                 reg_weight: float = 1.0,
                 loss_weight: float = 1.0,
                 score_thr: Optional[float] = None,
                 return_parts: bool = True,
                 app_levels: Optional[Sequence[int]] = None) -> None:
        super().__init__(in_channels, teacher_channels, num_levels, None, temperature,
                         app_weight, kl_weight, reg_weight, loss_weight, return_parts,
                         app_levels)
        self.score_thr = score_thr

    def init_from_teacher(self, teacher: nn.Module) -> None:
        """Check the bridges against the teacher (called when its checkpoint is loaded)."""
        out_channels = getattr(getattr(teacher, 'neck', None), 'out_channels', None)
        if isinstance(out_channels, int) and out_channels != self.teacher_channels:
            raise ValueError(
                f'FCFDDenseLoss: the teacher FPN has {out_channels} channels but the '
                f'bridges were built for {self.teacher_channels}; set teacher_channels '
                f'(or in_channels) to {out_channels}.')

    def _location_masks(self, teacher_cls: Sequence[Tensor],
                        mask: Optional[Sequence[Tensor]]) -> Optional[List[Tensor]]:
        if mask is None and self.score_thr is None:
            return None
        masks = []
        for level, t_cls in enumerate(teacher_cls):
            keep = None if mask is None else mask[level].float()
            if self.score_thr is not None:
                batch, hw = t_cls.size(0), t_cls.shape[-2] * t_cls.shape[-1]
                score = torch.sigmoid(t_cls.detach().float()).reshape(batch, -1, hw)
                fg = (score.amax(dim=1) >= self.score_thr).float()
                keep = fg if keep is None else keep * fg
            masks.append(keep)
        return masks

    @staticmethod
    def _outputs(result, what: str) -> Tuple[Sequence[Tensor], Sequence[Tensor]]:
        if not isinstance(result, (tuple, list)) or len(result) < 2:
            raise ValueError(f'FCFDDenseLoss: {what} must return (cls_scores, bbox_preds), '
                             f'got {type(result).__name__}')
        return result[0], result[1]

    def forward(self,
                student_feats: Sequence[Tensor],
                teacher_feats: Sequence[Tensor],
                student_cls: Sequence[Tensor],
                student_reg: Sequence[Tensor],
                teacher_cls: Sequence[Tensor],
                teacher_reg: Sequence[Tensor],
                student_dense_forward: Callable,
                teacher_dense_forward: Callable,
                mask: Optional[Sequence[Tensor]] = None,
                valid_mask: Optional[Tensor] = None) -> Union[Tensor, Dict[str, Tensor]]:
        """
        Args:
            student_feats / teacher_feats: ``num_levels`` FPN levels ``[B, C, H_l, W_l]``.
            student_cls / student_reg: per level ``[B, A · C, H_l, W_l]`` /
                ``[B, A · 4, H_l, W_l]``, the student's own dense outputs (reused).
            teacher_cls / teacher_reg: the same from the teacher (targets).
            student_dense_forward / teacher_dense_forward: ``feats -> (cls_scores,
                bbox_preds)``; the teacher's passes gradients to its input features.
            mask (optional): per level ``[B, H_l · W_l]`` bool, e.g. ``'dense.keep_mask'``.
            valid_mask (Tensor, optional): ``[B, 1, H, W]`` for the appearance MSE.

        Returns:
            dict of weighted fp32 scalar terms (sum = loss), or the loss if
            ``return_parts=False``.
        """
        to_teacher, to_student = self._bridge(student_feats, teacher_feats)
        app = self._appearance(to_teacher, teacher_feats, valid_mask)
        st_cls, st_reg = self._outputs(teacher_dense_forward(to_teacher),
                                       'teacher_dense_forward')
        ts_cls, ts_reg = self._outputs(student_dense_forward(to_student),
                                       'student_dense_forward')
        masks = self._location_masks(teacher_cls, mask)
        # the three paths in one computation over all levels
        results = fcfd_dense_paths(
            [(student_cls, student_reg), (st_cls, st_reg), (ts_cls, ts_reg)], teacher_cls,
            teacher_reg, self.temperature, masks)
        return self._collect(app, dict(zip(PATHS, results)))
