"""Per-class mean teacher embeddings for the ND loss (``tools/class_means.py``).

ND ("Improving Knowledge Distillation via Regularizing Feature Norm and Direction")
pulls each student embedding towards the direction of the teacher's mean embedding of
its class. Those means are computed once, before training, by running the frozen teacher
(eval mode, no grad) over the training set:

* **Faster R-CNN** (``NDLoss`` on ``teacher.roi.embedding``): the teacher's RoI
  classifier input (fc7, ``bbox_head.fc_cls``'s input) grouped by assigned label,
  background included (``num_classes + 1`` rows), on one of two sets of RoIs
  (``rois``):

  - ``'teacher'`` (default): the RoIs the teacher itself samples for training — its
    own RPN proposals (``train_cfg.rpn_proposal``) and its own RoI assigner and sampler
    (``add_gt_as_proposals`` included). This is what the teacher's ``loss()`` samples,
    minus the RPN anchor targets, the RPN loss and the box targets / losses.
  - ``'student'``: the ND authors' recipe — the RoIs the **student** samples in
    distillation training (its RPN proposals, its RoI sampler), with their assigned
    labels: exactly the ``teacher_emb`` / ``labels`` the ND loss receives in a training
    step (:meth:`~mmkd.models.BaseDistiller.collect_loss_inputs`). The student is the
    one of ``student_checkpoint`` (a student or distiller checkpoint), else of the
    config's ``load_from``, else as training would initialise it.
* **RetinaNet** (``DenseNDLoss``, mmkd's extension): the recorded cls-tower feature of
  the location of every positive anchor (the head's own assigner), grouped by assigned
  class, foreground only (``num_classes`` rows).
* **Classification** (an mmpretrain ``ImageClassifier`` teacher, ``NDLoss`` on
  ``teacher.embedding``): the penultimate feature (``extract_feat`` = the neck output,
  then the head's ``pre_logits``: the input of the head's fc) by gt label.

Sums are accumulated in float64 with ``index_add_``; the file (see
:func:`mmkd.utils.save_class_means`) stores float32 means, the per-row counts and where
the means came from.
"""
import copy
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner, set_random_seed
from mmengine.utils import ProgressBar
from torch import Tensor

from mmkd.models.distillers.anchor_labels import dense_anchor_labels
from mmkd.models.losses import DenseNDLoss
from mmkd.models.recorders import ModuleOutputRecorder, RoIHeadRecorder, sampled_roi_labels
from mmkd.utils.class_means import save_class_means

#: loss types whose ``class_means`` this tool computes
ND_LOSS_TYPES = ('NDLoss', 'DenseNDLoss')
#: whose sampled RoIs a Faster R-CNN ND table is computed on
ROI_SOURCES = ('teacher', 'student')
#: dataset wrappers that only repeat / re-weight the data: one pass needs the inner one
REPEATING_DATASETS = ('RepeatDataset', 'ClassBalancedDataset')


class ClassMeanAccumulator:
    """Running per-class sums and counts, float64, vectorised.

    Args:
        num_rows (int): ``C``, the number of label values (rows of the table).
    """

    def __init__(self, num_rows: int) -> None:
        self.num_rows = int(num_rows)
        self.sums: Optional[Tensor] = None  # [C, D] float64, allocated on first add
        self.counts: Optional[Tensor] = None  # [C] int64

    def add(self, embeddings: Tensor, labels: Tensor) -> None:
        """Add samples.

        Args:
            embeddings (Tensor): ``[N, D]``.
            labels (Tensor): ``[N]`` integers in ``[0, C)``.
        """
        if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(f'class means: embeddings must be [N, D] and labels [N], got '
                             f'{tuple(embeddings.shape)} and {tuple(labels.shape)}.')
        labels = labels.long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_rows):
            raise ValueError(f'class means: labels must be in [0, {self.num_rows}), got '
                             f'[{int(labels.min())}, {int(labels.max())}].')
        if self.sums is None:
            self.sums = embeddings.new_zeros((self.num_rows, embeddings.shape[1]),
                                             dtype=torch.float64)
            self.counts = labels.new_zeros((self.num_rows, ), dtype=torch.long)
        self.sums.index_add_(0, labels, embeddings.detach().double())
        self.counts.index_add_(0, labels, torch.ones_like(labels))

    def result(self) -> Tuple[Tensor, Tensor]:
        """``means [C, D]`` float64 (all-zero rows for classes without samples) and
        ``counts [C]`` int64, on CPU."""
        if self.sums is None:
            raise RuntimeError('class means: no sample was seen (empty dataset?).')
        means = self.sums / self.counts.clamp(min=1).unsqueeze(1).double()
        return means.cpu(), self.counts.cpu()


# ------------------------------------------------------------------------ collectors
class EmbeddingCollector:
    """Turns one preprocessed batch into teacher ``(embeddings [N, D], labels [N])``.

    Attributes:
        num_rows (int): number of label values (rows of the class-means table).
        feature (str): what the embedding is (recorded in the file's meta).
        includes_background (bool): whether the last row is mmdet's background.
    """
    num_rows: int
    feature: str
    includes_background: bool = False

    def __call__(self, inputs: Tensor, data_samples: List) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError


class RoICollector(EmbeddingCollector):
    """Faster R-CNN (any ``StandardRoIHead`` with a ``ConvFCBBoxHead``): the teacher's own
    training-time RoI sampling on its own proposals; embedding = the classifier input,
    label = assigned label, background = ``num_classes``.

    Args:
        teacher: the (loaded, frozen) two-stage detector, built with a ``train_cfg``.
        roi_recorder (RoIHeadRecorder): the recorder on ``teacher`` that computes
            ``teacher.roi.embedding`` in training (so the feature is the same one).
    """
    includes_background = True

    def __init__(self, teacher: nn.Module, roi_recorder: RoIHeadRecorder) -> None:
        roi_head = teacher.roi_head
        if getattr(roi_head, 'bbox_assigner', None) is None or \
                getattr(roi_head, 'bbox_sampler', None) is None or \
                not getattr(teacher, 'with_rpn', False):
            raise ValueError(
                'class means: the teacher needs an RPN and a train_cfg with rcnn.assigner /'
                ' rcnn.sampler (the RoIs are sampled as in its training); its config has '
                'none.')
        train_cfg = teacher.train_cfg or {}
        self.proposal_cfg = train_cfg.get('rpn_proposal', teacher.test_cfg.rpn)
        self.teacher = teacher
        self.roi_recorder = roi_recorder
        self.num_classes = roi_head.bbox_head.num_classes
        self.num_rows = self.num_classes + 1
        self.feature = ('roi_head.bbox_head.fc_cls input (RoI embedding) of the RoIs the '
                        "teacher samples from its own proposals, by assigned label")

    def __call__(self, inputs: Tensor, data_samples: List) -> Tuple[Tensor, Tensor]:
        from mmdet.models.utils import unpack_gt_instances
        from mmdet.structures.bbox import bbox2roi
        teacher, roi_head = self.teacher, self.teacher.roi_head
        feats = teacher.extract_feat(inputs)
        img_metas = [sample.metainfo for sample in data_samples]
        proposals = teacher.rpn_head.predict_by_feat(
            *teacher.rpn_head(feats), batch_img_metas=img_metas, cfg=self.proposal_cfg,
            rescale=False)
        gt_instances, gt_instances_ignore, _ = unpack_gt_instances(data_samples)
        sampling_results = []
        for i, results in enumerate(proposals):  # as StandardRoIHead.loss
            results.priors = results.pop('bboxes')
            assign = roi_head.bbox_assigner.assign(results, gt_instances[i],
                                                   gt_instances_ignore[i])
            sampling_results.append(roi_head.bbox_sampler.sample(
                assign, results, gt_instances[i], feats=[lvl[i][None] for lvl in feats]))
        rois = bbox2roi([res.priors for res in sampling_results])
        embedding = self.roi_recorder.forward_rois(feats, rois).embedding
        return embedding, sampled_roi_labels(sampling_results, self.num_classes)


class DenseCollector(EmbeddingCollector):
    """Anchor-based dense head (RetinaNet): the recorded feature (e.g. the last cls-tower
    conv) at the location of each positive anchor, labelled with the anchor's assigned
    class; a location with several positive anchors counts once per anchor (as in
    :func:`mmkd.models.losses.dense_nd_loss`).

    Args:
        teacher: the (loaded, frozen) detector, its ``bbox_head`` built with a train_cfg.
        module_path (str): teacher module whose output is the feature, one
            ``[B, D, H_l, W_l]`` per level (e.g. ``'bbox_head.cls_convs.3'``).
    """

    def __init__(self, teacher: nn.Module, module_path: str) -> None:
        self.teacher = teacher
        self.head = teacher.bbox_head
        self.module_path = module_path
        self.recorder = ModuleOutputRecorder(teacher, [module_path], 'teacher')
        self.num_rows = self.head.num_classes
        self.feature = (f'{module_path} output at the locations of positive anchors, by '
                        'assigned class')

    def __call__(self, inputs: Tensor, data_samples: List) -> Tuple[Tensor, Tensor]:
        with self.recorder.recording():
            self.head(self.teacher.extract_feat(inputs))
        feats = self.recorder.get(self.module_path)
        feats = (feats, ) if isinstance(feats, Tensor) else tuple(feats)
        labels = dense_anchor_labels(self.head, [f.shape[-2:] for f in feats], data_samples)
        embeddings, positive_labels = [], []
        for feat, lab in zip(feats, labels):
            b, d, h, w = feat.shape
            lab = lab.view(b, h * w, -1)  # [B, HW, A]
            positive = (lab >= 0) & (lab < self.num_rows)
            img, loc, _ = positive.nonzero(as_tuple=True)  # row-major, as lab[positive]
            embeddings.append(feat.permute(0, 2, 3, 1).reshape(b, h * w, d)[img, loc])
            positive_labels.append(lab[positive])
        return torch.cat(embeddings), torch.cat(positive_labels)

    def close(self) -> None:
        self.recorder.remove()


class ClassifierCollector(EmbeddingCollector):
    """mmpretrain ``ImageClassifier``: the penultimate feature — ``extract_feat`` (the
    neck output, e.g. global average pooling; the input of the head's fc) — by gt label.

    Args:
        teacher: the (loaded, frozen) classifier.
    """

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher
        self.num_rows = teacher.head.num_classes
        self.feature = 'extract_feat (neck output, input of the classifier fc), by gt label'

    def __call__(self, inputs: Tensor, data_samples: List) -> Tuple[Tensor, Tensor]:
        feats = self.teacher.extract_feat(inputs)
        head = getattr(self.teacher, 'head', None)
        if hasattr(head, 'pre_logits'):  # e.g. LinearClsHead: the last neck output
            feats = head.pre_logits(feats)
        feats = feats[-1] if isinstance(feats, (tuple, list)) else feats
        labels = [sample.gt_label.reshape(-1) for sample in data_samples]
        if any(lab.numel() != 1 for lab in labels):
            raise ValueError('class means: every image needs exactly one gt label '
                             '(single-label classification).')
        return feats.flatten(1), torch.cat(labels).to(feats.device)


class StudentRoICollector(EmbeddingCollector):
    """Faster R-CNN, the ND authors' recipe: the teacher's RoI embedding on the RoIs the
    **student** samples, with their assigned labels (background = ``num_classes``) —
    what the ND loss gets in a training step, collected by
    :meth:`~mmkd.models.BaseDistiller.collect_loss_inputs` (the student's loss pass in
    eval mode, the teacher's RoI head on the student's RoIs).

    Args:
        distiller: the distiller (teacher loaded), its student as it should propose.
        name (str): the ND loss binding.
    """
    includes_background = True
    takes_batch = True

    def __init__(self, distiller: nn.Module, name: str) -> None:
        binding = distiller.distill_losses[name]
        if binding.inputs.get('teacher_emb') != 'teacher.roi.embedding' or \
                binding.inputs.get('labels') != 'roi.labels':
            raise ValueError(
                "class means: rois='student' is for ND on RoI embeddings (teacher_emb="
                "'teacher.roi.embedding', labels='roi.labels'); the ND loss "
                f'{name!r} reads {dict(binding.inputs)}.')
        self.distiller, self.name = distiller, name
        self.num_classes = distiller.teacher.roi_head.bbox_head.num_classes
        self.num_rows = self.num_classes + 1
        self.feature = ('roi_head.bbox_head.fc_cls input (RoI embedding) of the teacher on '
                        'the RoIs the student samples (its RPN proposals and RoI sampler, '
                        'as in distillation training), by assigned label')

    def from_batch(self, data_batch: dict) -> Tuple[Tensor, Tensor]:
        """``data_batch`` as the train dataloader yields it."""
        calls = self.distiller.collect_loss_inputs(data_batch, self.name)[self.name]
        return (torch.cat([c['teacher_emb'] for c in calls]),
                torch.cat([c['labels'] for c in calls]))


def load_student_weights(distiller: nn.Module, path: str) -> None:
    """Load ``path`` into ``distiller.student``, strictly: a plain detector checkpoint
    (e.g. ``*_student.pth``, the student trained alone) or a distiller checkpoint (its
    ``student.*`` entries)."""
    from mmengine.runner import CheckpointLoader
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint)
    if any(k.startswith('student.') for k in state):
        state = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
    missing, unexpected = distiller.student.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f'class means: {path} does not fit the student: {len(missing)} missing keys '
            f'({", ".join(missing[:3])}...), {len(unexpected)} unexpected '
            f'({", ".join(unexpected[:3])}...); give a checkpoint of the config\'s student.')


def build_collector(distiller: nn.Module, binding: nn.Module) -> EmbeddingCollector:
    """The collector that matches ``binding`` (an ND loss binding of ``distiller``), for
    the default ``rois='teacher'``."""
    teacher, loss, inputs = distiller.teacher, binding.loss, binding.inputs
    if isinstance(loss, DenseNDLoss):
        source = inputs.get('teacher_feats', '')
        if not source.startswith('teacher.') or '.dense.' in source:
            raise ValueError(f"class means: DenseNDLoss's teacher_feats must be a teacher "
                             f"module path ('teacher.bbox_head.cls_convs.3'), got {source!r}.")
        return DenseCollector(teacher, source[len('teacher.'):])
    if inputs.get('teacher_emb') == 'teacher.roi.embedding':
        distiller._ensure_roi_recorders()
        return RoICollector(teacher, distiller.teacher_roi)
    if hasattr(teacher, 'head') and not hasattr(teacher, 'roi_head') \
            and not hasattr(teacher, 'bbox_head'):
        if inputs.get('teacher_emb') != 'teacher.embedding':
            raise ValueError(
                f"class means: for a classifier teacher the ND loss's teacher_emb must be "
                f"'teacher.embedding' (the fc input these means are computed on), got "
                f"{inputs.get('teacher_emb')!r}.")
        return ClassifierCollector(teacher)
    raise ValueError(
        f'class means: no collector for an ND loss fed '
        f'teacher_emb={inputs.get("teacher_emb")!r} by a {type(teacher).__name__} teacher '
        '(supported: teacher.roi.embedding of a two-stage detector, DenseNDLoss on a dense '
        'head, an mmpretrain classifier).')


# ------------------------------------------------------------------------ config side
def _nd_losses(model_cfg: dict) -> Dict[str, dict]:
    """name -> loss config of every ND loss in ``model_cfg.distill_losses``."""
    return {
        name: binding['loss']
        for name, binding in (model_cfg.get('distill_losses') or {}).items()
        if isinstance(binding, dict) and isinstance(binding.get('loss'), dict)
        and binding['loss'].get('type') in ND_LOSS_TYPES
    }


def _pick_nd_loss(model_cfg: dict, loss_name: Optional[str]) -> Tuple[str, dict]:
    losses = _nd_losses(model_cfg)
    if not losses:
        raise ValueError(f'class means: the config has no distill loss of type '
                         f'{"/".join(ND_LOSS_TYPES)}.')
    if loss_name is None:
        if len(losses) > 1:
            raise ValueError(f'class means: the config has several ND losses '
                             f'{sorted(losses)}; choose one with --loss NAME.')
        loss_name = next(iter(losses))
    if loss_name not in losses:
        raise ValueError(f'class means: no ND loss named {loss_name!r} (ND losses: '
                         f'{sorted(losses)}).')
    return loss_name, losses[loss_name]


def _one_pass_loader(loader_cfg: dict) -> dict:
    """The train dataloader, one pass over the data: repeat wrappers removed, a
    (seeded, shuffled) ``DefaultSampler`` instead of e.g. an ``InfiniteSampler``."""
    loader_cfg = copy.deepcopy(loader_cfg)
    dataset = loader_cfg['dataset']
    while dataset.get('type') in REPEATING_DATASETS:
        dataset = dataset['dataset']
    loader_cfg['dataset'] = dataset
    loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=True)
    return loader_cfg


def _dataset_meta(dataset_cfg: dict) -> List[dict]:
    """``type``, ``data_root`` and ``ann_file`` of every leaf dataset (plain values)."""
    if dataset_cfg.get('type') == 'ConcatDataset':
        return sum((_dataset_meta(d) for d in dataset_cfg['datasets']), [])
    if isinstance(dataset_cfg.get('dataset'), dict):
        return _dataset_meta(dataset_cfg['dataset'])
    return [{key: str(dataset_cfg.get(key)) for key in ('type', 'data_root', 'ann_file')}]


def _teacher_meta(teacher: Any) -> str:
    if isinstance(teacher, str):
        return teacher
    return f'<inline model config: type={dict(teacher).get("type")}>'


def compute_class_means(cfg: Config,
                        loss_name: Optional[str] = None,
                        max_images: Optional[int] = None,
                        device: Optional[Union[str, torch.device]] = None,
                        progress: bool = True,
                        rois: str = 'teacher',
                        student_checkpoint: Optional[str] = None
                        ) -> Tuple[Tensor, Tensor, dict]:
    """Run the frozen teacher of a distillation config over its training set and
    return the per-class mean embeddings the config's ND loss reads.

    The distiller is built from ``cfg.model`` (the ND loss gets a placeholder table, so
    no class-means file is needed) and its teacher checkpoint is loaded strictly by
    :meth:`~mmkd.models.BaseDistiller.load_teacher`. The training pipeline is used
    (augmentation included, seeded by ``cfg.randomness.seed``), one pass, repeat
    wrappers removed.

    Args:
        cfg (Config): the distillation config (not modified).
        loss_name (str, optional): which ND loss, if the config has several.
        max_images (int, optional): stop after this many training images.
        device: defaults to ``'cuda'`` if available, else ``'cpu'``.
        progress (bool): show a progress bar.
        rois (str): Faster R-CNN only: ``'teacher'`` (the teacher's own sampled RoIs) or
            ``'student'`` (the student's, the ND authors' recipe; see the module
            docstring).
        student_checkpoint (str, optional): with ``rois='student'``, the student's
            weights (default: the config's ``load_from``, else the student's own init).

    Returns:
        tuple: ``means [C, D]`` float64 (zero rows for classes never seen), ``counts [C]``
        int64, ``meta`` dict (plain values; see :func:`mmkd.utils.save_class_means`).
    """
    if rois not in ROI_SOURCES:
        raise ValueError(f'class means: rois must be one of {ROI_SOURCES}, got {rois!r}.')
    if student_checkpoint is not None and rois != 'student':
        raise ValueError("class means: a student checkpoint is only used with "
                         "rois='student'.")
    cfg = copy.deepcopy(cfg)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loss_name, loss_cfg = _pick_nd_loss(cfg.model, loss_name)
    expected = (loss_cfg.get('num_classes'), loss_cfg.get('in_channels'))
    for other in _nd_losses(cfg.model).values():  # never read a class-means file here
        other['class_means'] = torch.zeros(other.get('num_classes') or 1,
                                           other.get('in_channels') or 1)
    seed = (cfg.get('randomness') or {}).get('seed')
    seed = 0 if seed is None else int(seed)
    set_random_seed(seed)

    if cfg.get('data_preprocessor') is not None:
        # as the Runner does (mmpretrain configs keep the input normalisation there):
        # without it the teacher would see unnormalised images
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    model.load_teacher()
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if rois == 'student':
        student_checkpoint = student_checkpoint or cfg.get('load_from')
        if student_checkpoint:
            load_student_weights(model, student_checkpoint)
        else:
            model.student.init_weights()  # as training starts (e.g. ImageNet backbone)
        collector = StudentRoICollector(model, loss_name)
    model.to(device).eval()
    if rois == 'teacher':
        collector = build_collector(model, model.distill_losses[loss_name])

    loader_cfg = _one_pass_loader(cfg.train_dataloader)
    loader = Runner.build_dataloader(loader_cfg, seed=seed)
    total = len(loader.dataset)
    if max_images is not None:
        total = min(total, int(max_images))
    accumulator = ClassMeanAccumulator(collector.num_rows)
    bar = ProgressBar(total) if progress else None
    seen = 0
    with torch.no_grad():
        for data_batch in loader:
            if seen >= total:
                break
            take = min(len(data_batch['inputs']), total - seen)
            data_batch = {k: v[:take] if isinstance(v, (list, tuple)) else v
                          for k, v in data_batch.items()}
            if getattr(collector, 'takes_batch', False):
                embeddings, labels = collector.from_batch(data_batch)
            else:
                data = model.data_preprocessor(data_batch, False)
                embeddings, labels = collector(model.teacher_input(data['inputs']),
                                               data['data_samples'])
            accumulator.add(embeddings, labels)
            seen += take
            if bar is not None:
                bar.update(take)
    if bar is not None:
        bar.file.write('\n')
    if hasattr(collector, 'close'):
        collector.close()
    means, counts = accumulator.result()

    got = tuple(means.shape)
    if (expected[0] is not None and expected[0] != got[0]) or (
            expected[1] is not None and expected[1] != got[1]):
        raise ValueError(
            f'class means: the teacher gives class means of shape {got} but the config\'s '
            f'{loss_cfg["type"]} {loss_name!r} expects (num_classes, in_channels) = '
            f'{expected}; fix num_classes / in_channels of the loss.')
    meta = dict(
        config=str(cfg.filename) if cfg.filename else None,
        loss=loss_name,
        teacher_config=_teacher_meta(cfg.model.teacher),
        teacher_checkpoint=str(model.teacher_ckpt),
        dataset=_dataset_meta(loader_cfg['dataset']),
        num_images=seen,
        feature=collector.feature,
        num_classes=collector.num_rows - int(collector.includes_background),
        includes_background=collector.includes_background,
        seed=seed)
    if isinstance(collector, (RoICollector, StudentRoICollector)):
        meta['rois'] = rois
        if rois == 'student':
            meta['student_checkpoint'] = None if not student_checkpoint else str(
                student_checkpoint)
    return means, counts, meta


def write_class_means(cfg: Config,
                      out: Optional[str] = None,
                      loss_name: Optional[str] = None,
                      max_images: Optional[int] = None,
                      device: Optional[Union[str, torch.device]] = None,
                      progress: bool = True,
                      rois: str = 'teacher',
                      student_checkpoint: Optional[str] = None) -> str:
    """:func:`compute_class_means` and save the file (default: the ND loss's own
    ``class_means`` path, i.e. where training will read it). Returns the path."""
    name, loss_cfg = _pick_nd_loss(cfg.model, loss_name)
    if out is None:
        out = loss_cfg.get('class_means')
        if not isinstance(out, str):
            raise ValueError('class means: give --out (the config\'s ND loss has no '
                             'class_means path).')
    means, counts, meta = compute_class_means(cfg, name, max_images, device, progress, rois,
                                              student_checkpoint)
    save_class_means(out, means, counts, meta)
    shown = ', '.join(str(int(c)) for c in counts)
    print_log(f'mmkd: class means {tuple(means.shape)} of {meta["num_images"]} images '
              f'written to {osp.abspath(out)} (samples per row: {shown})', logger='current')
    empty = [i for i, c in enumerate(counts.tolist()) if c == 0]
    if empty:
        print_log(f'mmkd: rows {empty} had no sample and are all-zero (ND then gives those '
                  'samples a constant loss); use more images if that is unexpected.',
                  logger='current', level=30)
    return out


__all__ = [
    'ClassMeanAccumulator', 'EmbeddingCollector', 'RoICollector', 'StudentRoICollector',
    'DenseCollector', 'load_student_weights',
    'ClassifierCollector', 'build_collector', 'compute_class_means', 'write_class_means',
    'ND_LOSS_TYPES'
]
