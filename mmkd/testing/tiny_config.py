"""Turn a full-size config (COCO / VOC, R50 / R101, URL weights) into one that trains for
a couple of iterations on the generated tiny dataset, on CPU, without downloads.

Used by the test-suite to check that every shipped config still builds and runs. The
functions here never touch the config file: they edit a loaded :class:`Config` in place
and return it.

The pieces are kept separate so that other tasks can reuse them:

* :func:`inline_model_configs` / :func:`strip_pretrained`: model-side, task-agnostic
  (resolve ``student`` / ``teacher`` config paths, drop every ``Pretrained`` / URL init);
* :func:`tiny_detection_data`: detection dataloaders and evaluators -> tiny dataset
  (:func:`shrink_scales`, :func:`shrink_batch_augments`: image sizes);
* :func:`tiny_runtime`: loop, hooks, logging, work dir;
* :func:`tiny_run_config`: all of the above for a detection config;
* :func:`write_random_checkpoint` / :class:`RandomCheckpointCache`: a random-init
  checkpoint for a (teacher) model config, so that ``teacher_ckpt`` loads strictly;
* :func:`random_class_means`: a random, correctly shaped class-means file for every loss
  that reads one (ND), so that training starts without ``tools/class_means.py``;
* classification: :func:`generate_tiny_classification_data`,
  :func:`tiny_classification_data` and :func:`tiny_cls_run_config` (CIFAR-format and
  ImageNet-layout tiny data; ``RandomCheckpointCache(root, scope='mmpretrain')`` for the
  teachers).
"""
import copy
import hashlib
import importlib
import json
import os
import os.path as osp
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config, ConfigDict

#: weight sources that would need a download (or a cluster file system)
URL_PREFIXES = ('http://', 'https://', 'torchvision://', 'open-mmlab://', 'openmmlab://',
                'modelzoo://', 'mmcls://', 'mmpretrain://', 'mmdet://', 'pavi://', 's3://')
#: dataset wrappers replaced by (the first of) the dataset(s) they wrap
UNWRAPPED_DATASETS = ('RepeatDataset', 'ConcatDataset', 'ClassBalancedDataset')
#: transform keys holding an image scale, a list of scales or a scale range
SCALE_KEYS = ('scale', 'scales', 'img_scale')

#: the generated dataset's layout (see :func:`mmkd.datasets.generate_detection_dataset`)
COCO_ANN = {'train': 'annotations/instances_train.json',
            'val': 'annotations/instances_val.json'}
COCO_IMG_PREFIX = 'VOCdevkit/SYNTH/JPEGImages/'
VOC_ROOT = 'VOCdevkit/'
VOC_SUBDIR = 'SYNTH/'
VOC_SETS = {'train': 'SYNTH/ImageSets/Main/trainval.txt',
            'val': 'SYNTH/ImageSets/Main/test.txt'}


# ------------------------------------------------------------------------ model side
def _is_weight_init(init: Any) -> bool:
    """Whether an ``init_cfg`` entry loads weights (``Pretrained`` or any checkpoint)."""
    return isinstance(init, dict) and (
        str(init.get('type', '')).startswith('Pretrained') or 'checkpoint' in init)


def strip_pretrained(cfg: Any) -> int:
    """Remove, in place and recursively, every weight-loading initialisation:
    ``init_cfg=dict(type='Pretrained', ...)`` (also inside ``init_cfg`` lists) and
    ``pretrained='<path or URL>'``. Other initialisers (Kaiming, Normal...) stay.

    Returns:
        int: how many were removed.
    """
    removed = 0
    if isinstance(cfg, dict):
        for key in list(cfg.keys()):
            value = cfg[key]
            if key == 'init_cfg' and _is_weight_init(value):
                del cfg[key]
                removed += 1
            elif key == 'init_cfg' and isinstance(value, (list, tuple)) and \
                    any(_is_weight_init(v) for v in value):
                kept = [v for v in value if not _is_weight_init(v)]
                removed += len(value) - len(kept)
                cfg[key] = kept or None
            elif key == 'pretrained' and isinstance(value, str):
                cfg[key] = None
                removed += 1
            else:
                removed += strip_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            removed += strip_pretrained(value)
    return removed


def find_urls(cfg: Any) -> list:
    """Every string value of ``cfg`` that names a remote weight source (for tests)."""
    found = []
    if isinstance(cfg, dict):
        for value in cfg.values():
            found += find_urls(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            found += find_urls(value)
    elif isinstance(cfg, str) and cfg.startswith(URL_PREFIXES):
        found.append(cfg)
    return found


def inline_model_configs(model: dict, keys: Sequence[str] = ('student', 'teacher')) -> dict:
    """Replace ``model[key]`` given as a config path (``mmdet::...``, ``mmkd::...`` or a
    file) by the model dict it names, for each of ``keys`` present."""
    from mmkd.models.distillers.teacher import resolve_model_config
    for key in keys:
        if isinstance(model.get(key), str):
            model[key] = resolve_model_config(model[key], key)
    return model


def set_num_classes(cfg: Any, num_classes: int) -> int:
    """Set every integer ``num_classes`` of ``cfg`` (recursively, in place)."""
    changed = 0
    if isinstance(cfg, dict):
        for key in list(cfg.keys()):
            if key == 'num_classes' and isinstance(cfg[key], int):
                cfg[key] = num_classes
                changed += 1
            else:
                changed += set_num_classes(cfg[key], num_classes)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            changed += set_num_classes(value, num_classes)
    return changed


#: distill losses that read a class-means file (``tools/class_means.py``) at train start
CLASS_MEANS_LOSSES = ('NDLoss', 'DenseNDLoss')


def random_class_means(model: dict, root: str, num_classes: Optional[int] = None,
                       seed: int = 0) -> int:
    """For every distill loss of ``model`` that reads a class-means file, write a random
    file of the loss's ``(num_classes, in_channels)`` under ``root`` and point the loss at
    it, in place. With ``num_classes`` (the heads were re-sized by :func:`set_num_classes`,
    which also rewrote the loss's row count), the table gets ``num_classes + 1`` rows when
    the loss is fed RoI labels (``roi.labels``: background row) and ``num_classes``
    otherwise.

    Returns:
        int: how many files were written.
    """
    from mmkd.utils.class_means import save_class_means
    written = 0
    for name, binding in (model.get('distill_losses') or {}).items():
        loss = binding.get('loss') if isinstance(binding, dict) else None
        if not isinstance(loss, dict) or loss.get('type') not in CLASS_MEANS_LOSSES or \
                not isinstance(loss.get('class_means'), str) or \
                loss.get('in_channels') is None:
            continue
        with_background = 'roi.labels' in dict(binding.get('inputs') or {}).values()
        if num_classes is not None:
            loss['num_classes'] = int(num_classes) + int(with_background)
        rows, dim = int(loss['num_classes']), int(loss['in_channels'])
        gen = torch.Generator().manual_seed(seed + written)
        path = osp.join(root, f'class_means_{name}.pth')
        save_class_means(path, torch.randn(rows, dim, generator=gen), torch.ones(rows),
                         dict(random=True, includes_background=with_background))
        loss['class_means'] = path
        written += 1
    return written


# ------------------------------------------------------------------------ data side
def _is_pair(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and \
        all(isinstance(v, (int, float)) for v in value)


def _small_scale(value: Any, img_scale: Tuple[int, int]) -> Any:
    if _is_pair(value):
        return tuple(img_scale)
    if isinstance(value, (list, tuple)) and value and all(_is_pair(v) for v in value):
        return [tuple(img_scale) for _ in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(img_scale)
    return value


def shrink_scales(cfg: Any, img_scale: Tuple[int, int]) -> None:
    """In place: every image scale of every transform (``Resize``/``RandomResize``
    ``scale``, ``RandomChoiceResize`` ``scales``, ``Mosaic``/``MixUp`` ``img_scale``,
    ``Pad`` ``size``, inside ``TestTimeAug`` / ``RandomChoice`` too) -> ``img_scale``;
    multi-scale lists keep their length; so does an absolute ``RandomCrop`` ``crop_size``
    (a relative one is a fraction and stays). A negative ``RandomAffine`` ``border`` (YOLOX /
    RTMDet: cut a mosaic of twice the scale back to the scale) becomes minus half of
    ``img_scale``."""
    if isinstance(cfg, dict):
        is_transform = 'type' in cfg
        for key in list(cfg.keys()):
            if is_transform and (key in SCALE_KEYS or
                                 (key == 'size' and 'Pad' in str(cfg['type']))):
                cfg[key] = _small_scale(cfg[key], img_scale)
            elif is_transform and key == 'crop_size' and 'Crop' in str(cfg['type']) and \
                    cfg.get('crop_type', 'absolute') in ('absolute', 'absolute_range'):
                cfg[key] = _small_scale(cfg[key], img_scale)
            elif is_transform and key == 'border' and 'RandomAffine' in str(cfg['type']) \
                    and _is_pair(cfg[key]) and min(cfg[key]) < 0:
                cfg[key] = (-img_scale[0] // 2, -img_scale[1] // 2)
            else:
                shrink_scales(cfg[key], img_scale)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            shrink_scales(value, img_scale)


def shrink_batch_augments(model: Any, img_scale: Tuple[int, int]) -> int:
    """In place, in a model config (data preprocessors of the student / teacher too):
    every ``BatchSyncRandomResize`` (YOLOX's multi-scale batches, 320-640 px) draws
    its size from ``max(img_scale)`` only (rounded up to its ``size_divisor``).

    Returns:
        int: how many were changed.
    """
    changed = 0
    if isinstance(model, dict):
        if 'BatchSyncRandomResize' in str(model.get('type', '')):
            div = int(model.get('size_divisor', 32))
            size = -(-max(img_scale) // div) * div
            model['random_size_range'] = (size, size)
            changed += 1
        for value in model.values():
            changed += shrink_batch_augments(value, img_scale)
    elif isinstance(model, (list, tuple)):
        for value in model:
            changed += shrink_batch_augments(value, img_scale)
    return changed


def _leaf_dataset(dataset: dict) -> dict:
    """The dataset config under Repeat/Concat/ClassBalanced wrappers (first of a
    concatenation); other wrappers (e.g. ``MultiImageMixDataset``) are kept."""
    while dataset.get('type') in UNWRAPPED_DATASETS:
        dataset = dataset['datasets'][0] if 'datasets' in dataset else dataset['dataset']
    if 'dataset' in dataset and isinstance(dataset['dataset'], dict):
        dataset = copy.deepcopy(dataset)
        dataset['dataset'] = _leaf_dataset(dataset['dataset'])
    return dataset


def detect_format(dataset: dict) -> str:
    """``'voc'`` for XML-style datasets (``VOCDataset``, ``.txt`` image sets), else
    ``'coco'``."""
    leaf = _leaf_dataset(dataset)
    while 'dataset' in leaf and isinstance(leaf['dataset'], dict):
        leaf = leaf['dataset']
    dtype = str(leaf.get('type', ''))
    if 'VOC' in dtype or 'XML' in dtype or str(leaf.get('ann_file', '')).endswith('.txt'):
        return 'voc'
    return 'coco'


def _point_leaf(leaf: dict, data_root: str, split: str, fmt: str, metainfo: dict) -> dict:
    leaf = copy.deepcopy(leaf)
    if fmt == 'coco':
        if 'Coco' not in str(leaf.get('type', '')):
            leaf['type'] = 'CocoDataset'
        for key in ('img_subdir', 'ann_subdir'):
            leaf.pop(key, None)
        leaf.update(data_root=data_root, ann_file=COCO_ANN[split],
                    data_prefix=dict(img=COCO_IMG_PREFIX))
    elif fmt == 'voc':
        leaf['type'] = 'VOCDataset'
        leaf.update(data_root=osp.join(data_root, VOC_ROOT), ann_file=VOC_SETS[split],
                    data_prefix=dict(sub_data_root=VOC_SUBDIR), img_subdir='JPEGImages',
                    ann_subdir='Annotations')
    else:
        raise ValueError(f"fmt must be 'coco' or 'voc', got {fmt!r}")
    leaf['metainfo'] = copy.deepcopy(metainfo)
    leaf['test_mode'] = split != 'train'
    filter_cfg = leaf.get('filter_cfg')
    if isinstance(filter_cfg, dict):
        for key in ('min_size', 'bbox_min_size'):
            if key in filter_cfg:
                filter_cfg[key] = 1
    return leaf


def _point_dataset(dataset: dict, data_root: str, split: str, fmt: str,
                   metainfo: dict) -> dict:
    dataset = _leaf_dataset(dataset)
    if 'dataset' in dataset and isinstance(dataset['dataset'], dict):  # kept wrapper
        dataset['dataset'] = _point_dataset(dataset['dataset'], data_root, split, fmt,
                                            metainfo)
        return dataset
    return _point_leaf(dataset, data_root, split, fmt, metainfo)


def _point_evaluator(evaluator: Any, data_root: str) -> Any:
    if isinstance(evaluator, (list, tuple)):
        return [_point_evaluator(e, data_root) for e in evaluator]
    if isinstance(evaluator, dict) and 'ann_file' in evaluator:
        evaluator = copy.deepcopy(evaluator)
        evaluator['ann_file'] = osp.join(data_root, COCO_ANN['val'])
    return evaluator


def _tiny_loader(loader: dict, data_root: str, split: str, fmt: str, metainfo: dict,
                 img_scale: Tuple[int, int], batch_size: int) -> dict:
    loader = copy.deepcopy(loader)
    loader['dataset'] = _point_dataset(loader['dataset'], data_root, split, fmt, metainfo)
    shrink_scales(loader['dataset'], img_scale)
    loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    loader.pop('prefetch_factor', None)
    return loader


def tiny_detection_data(cfg: Config,
                        data_root: str,
                        fmt: Optional[str] = None,
                        img_scale: Tuple[int, int] = (128, 128),
                        batch_size: int = 2,
                        metainfo: Optional[dict] = None) -> Config:
    """Point the train/val/test dataloaders (and COCO evaluators' ``ann_file``) of a
    detection config at the generated dataset under ``data_root``, in place.

    Args:
        fmt: ``'coco'`` or ``'voc'``; by default the format of the config's own train
            dataset (:func:`detect_format`), so COCO configs read the COCO json and VOC
            configs the VOC XML of the same images.
        img_scale: replaces every resize scale of the pipelines (:func:`shrink_scales`).
        metainfo: defaults to :func:`mmkd.datasets.detection_metainfo`.
    """
    from mmkd.datasets import detection_metainfo
    metainfo = dict(metainfo or detection_metainfo())
    data_root = osp.abspath(data_root)
    fmt = fmt or detect_format(cfg.train_dataloader.dataset)
    splits = (('train_dataloader', 'train'), ('val_dataloader', 'val'),
              ('test_dataloader', 'val'))
    for key, split in splits:
        if cfg.get(key) is not None:
            cfg[key] = _tiny_loader(cfg[key], data_root, split, fmt, metainfo, img_scale,
                                    batch_size)
    for key in ('val_evaluator', 'test_evaluator'):
        if cfg.get(key) is not None:
            cfg[key] = _point_evaluator(cfg[key], data_root)
    return cfg


# ------------------------------------------------------------------------ runtime
def tiny_runtime(cfg: Config,
                 work_dir: str,
                 max_iters: int = 2,
                 val: bool = False,
                 save_checkpoint: bool = False,
                 seed: int = 0,
                 max_epochs: Optional[int] = None) -> Config:
    """A short iteration-based run, in place: ``max_iters`` iterations, logging every
    iteration, no checkpoints (unless ``save_checkpoint``: one, at the end), validation
    off (``val=False``: ``TeacherEvalHook`` then skips itself) or once at the end.

    With ``max_epochs``, an epoch-based run of that many epochs instead (``max_iters`` is
    then ignored), for the runtime hooks that act at an epoch (mode / pipeline
    switches, ``SetEpochInfoHook``); the config's parameter schedulers are kept."""
    cfg.work_dir = osp.abspath(work_dir)
    cfg.experiment_name = osp.basename(cfg.work_dir.rstrip('/')) or 'tiny'
    if max_epochs is None:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                             val_interval=max_iters)
    else:
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                             val_interval=max_epochs)
    if not val:
        cfg.val_dataloader = None
        cfg.val_cfg = None
        cfg.val_evaluator = None
    elif cfg.get('val_cfg') is None:
        cfg.val_cfg = dict(type='ValLoop')
    hooks = cfg.get('default_hooks') or ConfigDict()
    if hooks.get('logger') is not None:
        hooks.logger.interval = 1
    if not save_checkpoint:
        hooks.checkpoint = None
    elif max_epochs is None:
        hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=max_iters)
    else:
        hooks.checkpoint = dict(type='CheckpointHook', by_epoch=True, interval=max_epochs)
    cfg.default_hooks = hooks
    log_processor = dict(cfg.get('log_processor') or dict(type='LogProcessor'))
    log_processor.update(window_size=1, by_epoch=False)
    cfg.log_processor = log_processor
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.pop('name', None)  # one visualizer instance per runner
    optim_wrapper = cfg.get('optim_wrapper')
    if isinstance(optim_wrapper, dict) and optim_wrapper.get('type') == 'AmpOptimWrapper' \
            and not torch.cuda.is_available():
        optim_wrapper.type = 'OptimWrapper'
        optim_wrapper.pop('loss_scale', None)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.load_from = None
    cfg.resume = False
    cfg.launcher = 'none'
    if isinstance(cfg.get('env_cfg'), dict) and cfg.env_cfg.get('dist_cfg') and \
            not torch.cuda.is_available():
        cfg.env_cfg.dist_cfg.backend = 'gloo'
    return cfg


def tiny_run_config(cfg: Config,
                    data_root: str,
                    work_dir: str,
                    teacher_ckpt: Optional[str] = None,
                    max_iters: int = 2,
                    img_scale: Tuple[int, int] = (128, 128),
                    fmt: Optional[str] = None,
                    batch_size: int = 2,
                    num_classes: Union[None, int, str] = None,
                    val: bool = False,
                    save_checkpoint: bool = False,
                    max_epochs: Optional[int] = None) -> Config:
    """A copy of the full-size detection config ``cfg`` that trains ``max_iters``
    iterations (or ``max_epochs`` epochs, see :func:`tiny_runtime`) of ``batch_size``
    images on the generated dataset at ``data_root``.

    * model: ``student`` / ``teacher`` paths inlined, every ``Pretrained`` / URL init
      removed (student, teacher, backbones...), ``model.teacher_ckpt = teacher_ckpt``
      (distillers only; write one with :class:`RandomCheckpointCache`); a random
      class-means file in ``work_dir`` for every ND loss (:func:`random_class_means`);
    * data: see :func:`tiny_detection_data` (dataset wrappers unwrapped, scales shrunk),
      also in the pipelines of custom hooks (``PipelineSwitchHook``) and the model's batch
      augments (:func:`shrink_batch_augments`);
    * runtime: see :func:`tiny_runtime`.

    Args:
        num_classes: ``None`` keeps the heads' class counts (the tiny labels 0..3 are
            valid for any head; training needs nothing else); ``'dataset'`` (or an int)
            sets every ``num_classes`` of the model to the dataset's — needed with
            ``val=True``, as metrics cannot map labels of classes the data lacks.
    """
    from mmkd.datasets import detection_metainfo
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    inline_model_configs(model)
    strip_pretrained(model)
    if num_classes is not None:
        if num_classes == 'dataset':
            num_classes = len(detection_metainfo()['classes'])
        set_num_classes(model, int(num_classes))
    if 'teacher' in model:
        model.teacher_ckpt = teacher_ckpt
    random_class_means(model, work_dir, num_classes)
    shrink_batch_augments(model, img_scale)
    tiny_detection_data(cfg, data_root, fmt=fmt, img_scale=img_scale,
                        batch_size=batch_size)
    shrink_scales(cfg.get('custom_hooks') or [], img_scale)
    tiny_runtime(cfg, work_dir, max_iters=max_iters, val=val,
                 save_checkpoint=save_checkpoint, max_epochs=max_epochs)
    return cfg


# ------------------------------------------------------------------------ classification
#: the generated classification data (see :func:`generate_tiny_classification_data`)
CIFAR_SUBDIR = 'cifar/'
IMAGENET_SUBDIR = 'imagenet/'
#: transform keys of mmpretrain pipelines holding an image / crop size
CLS_SIZE_KEYS = ('scale', 'crop_size')


def generate_tiny_classification_data(root: str, seed: int = 0) -> str:
    """Write the tiny classification data the harness points configs at: a CIFAR-format
    set (100 classes, 1 train and 1 test image each) under ``root/cifar/`` and a 4-class
    ImageNet-layout folder (64 px JPEGs, 2 train / 1 val per class) under
    ``root/imagenet/``. Returns ``root``."""
    from mmkd.datasets import generate_cifar_dataset, generate_imagenet_folder
    generate_cifar_dataset(osp.join(root, CIFAR_SUBDIR), num_classes=100,
                           num_train_per_class=1, num_test_per_class=1, seed=seed)
    generate_imagenet_folder(osp.join(root, IMAGENET_SUBDIR), num_classes=4,
                             num_train_per_class=2, num_val_per_class=1, img_size=64,
                             seed=seed)
    return root


def shrink_cls_sizes(cfg: Any, img_size: int) -> None:
    """In place: every ``scale`` / ``crop_size`` of every transform of an mmpretrain
    pipeline (``RandomResizedCrop``, ``ResizeEdge``, ``CenterCrop``...) -> ``img_size``
    (ints stay ints, pairs become ``(img_size, img_size)``)."""
    if isinstance(cfg, dict):
        is_transform = 'type' in cfg
        for key in list(cfg.keys()):
            value = cfg[key]
            if is_transform and key in CLS_SIZE_KEYS and not isinstance(value, bool):
                if isinstance(value, (int, float)):
                    cfg[key] = img_size
                elif _is_pair(value):
                    cfg[key] = (img_size, img_size)
            else:
                shrink_cls_sizes(value, img_size)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            shrink_cls_sizes(value, img_size)


def detect_cls_format(dataset: dict) -> str:
    """``'cifar'`` for CIFAR-format datasets (``CIFAR10`` / ``CIFAR100`` /
    ``SyntheticCIFAR100``), else ``'imagenet'`` (folder layouts)."""
    leaf = _leaf_dataset(dataset)
    return 'cifar' if 'CIFAR' in str(leaf.get('type', '')) else 'imagenet'


def _point_cls_dataset(dataset: dict, data_root: str, split: str, fmt: str) -> dict:
    dataset = copy.deepcopy(_leaf_dataset(dataset))
    if fmt == 'cifar':
        dataset['type'] = 'SyntheticCIFAR100'
        dataset.update(data_root=osp.join(data_root, CIFAR_SUBDIR),
                       split='train' if split == 'train' else 'test')
        dataset.pop('download', None)
    elif fmt == 'imagenet':
        dataset['type'] = 'ImageNet'
        dataset.update(data_root=osp.join(data_root, IMAGENET_SUBDIR),
                       split='train' if split == 'train' else 'val')
        for key in ('ann_file', 'data_prefix'):
            dataset.pop(key, None)
    else:
        raise ValueError(f"fmt must be 'cifar' or 'imagenet', got {fmt!r}")
    return dataset


def tiny_classification_data(cfg: Config,
                             data_root: str,
                             fmt: Optional[str] = None,
                             img_size: int = 32,
                             batch_size: int = 2) -> Config:
    """Point the train/val/test dataloaders of a classification config at the tiny data of
    :func:`generate_tiny_classification_data` under ``data_root``, in place.

    Args:
        fmt: ``'cifar'`` (the CIFAR-format set, read by ``SyntheticCIFAR100``, i.e.
            mmpretrain's ``CIFAR100`` without the md5 checks) or ``'imagenet'`` (the
            ImageNet-layout folder, stock ``ImageNet`` dataset); by default the format of
            the config's own train dataset (:func:`detect_cls_format`).
        img_size: replaces every ``scale`` / ``crop_size`` (:func:`shrink_cls_sizes`);
            CIFAR pipelines have none.
    """
    data_root = osp.abspath(data_root)
    fmt = fmt or detect_cls_format(cfg.train_dataloader.dataset)
    for key, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                       ('test_dataloader', 'val')):
        if cfg.get(key) is None:
            continue
        loader = copy.deepcopy(cfg[key])
        loader['dataset'] = _point_cls_dataset(loader['dataset'], data_root, split, fmt)
        shrink_cls_sizes(loader['dataset'], img_size)
        loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
        loader.pop('prefetch_factor', None)
        cfg[key] = loader
    return cfg


def tiny_cls_run_config(cfg: Config,
                        data_root: str,
                        work_dir: str,
                        teacher_ckpt: Optional[str] = None,
                        max_iters: int = 2,
                        img_size: int = 32,
                        fmt: Optional[str] = None,
                        batch_size: int = 2,
                        val: bool = False,
                        save_checkpoint: bool = False) -> Config:
    """The classification counterpart of :func:`tiny_run_config`: a copy of ``cfg``
    (CIFAR-100 or ImageNet, a distiller or a plain classifier) that trains ``max_iters``
    iterations of ``batch_size`` images on the tiny data under ``data_root``.

    * model: ``student`` / ``teacher`` paths inlined (``mmpretrain::`` / ``mmkd::``), every
      ``Pretrained`` / URL init removed, ``model.teacher_ckpt = teacher_ckpt``, a random
      class-means file for every ND loss;
    * data: :func:`tiny_classification_data`; ``LSHBiasInitHook`` limited to 2 batches;
    * runtime: :func:`tiny_runtime`.

    The class counts are kept (the tiny labels are valid for 100- and 1000-way heads).
    """
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    inline_model_configs(model)
    strip_pretrained(model)
    if 'teacher' in model:
        model.teacher_ckpt = teacher_ckpt
    random_class_means(model, work_dir)
    tiny_classification_data(cfg, data_root, fmt=fmt, img_size=img_size,
                             batch_size=batch_size)
    for hook in cfg.get('custom_hooks') or []:
        if hook.get('type') == 'LSHBiasInitHook':
            hook['max_batches'] = 2
    tiny_runtime(cfg, work_dir, max_iters=max_iters, val=val,
                 save_checkpoint=save_checkpoint)
    cfg.log_level = 'WARNING'  # no per-parameter init report (a third of a tiny run)
    return cfg


# ------------------------------------------------------------------------ checkpoints
def build_model(model_cfg: dict, scope: str = 'mmdet') -> torch.nn.Module:
    """Build ``model_cfg`` from the ``MODELS`` registry of ``scope`` (``'mmdet'``,
    ``'mmpretrain'``...), without weight-loading inits."""
    model_cfg = copy.deepcopy(ConfigDict(model_cfg))
    strip_pretrained(model_cfg)
    import mmkd  # noqa: F401  (registers the distillers, losses and connectors)
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    # the scope also routes nested builds that go through mmengine's root registry
    # (e.g. BaseModel's data_preprocessor)
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(model_cfg)


def write_random_checkpoint(model_cfg: dict, path: str, scope: str = 'mmdet',
                            seed: int = 0) -> str:
    """Build ``model_cfg`` (weight-loading inits removed), ``init_weights()`` with a fixed
    seed and save ``dict(state_dict=..., meta={})`` to ``path``: a checkpoint that
    loads strictly into that model config, e.g. as a distiller's ``teacher_ckpt``."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = build_model(model_cfg, scope)
        model.init_weights()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return path


def config_digest(cfg: Any) -> str:
    """A short stable hash of a (model) config."""
    plain = cfg.to_dict() if isinstance(cfg, ConfigDict) else cfg
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class RandomCheckpointCache:
    """Random-init checkpoints under ``root``, one per distinct model config (after
    ``Pretrained`` inits are stripped), written on first request.

    Example::

        cache = RandomCheckpointCache(tmp_dir)
        cfg = tiny_run_config(Config.fromfile(path), data_root, work_dir)
        cfg.model.teacher_ckpt = cache.get(cfg.model.teacher)
    """

    def __init__(self, root: str, scope: str = 'mmdet') -> None:
        self.root = root
        self.scope = scope
        self._paths: Dict[str, str] = {}

    def get(self, model_cfg: Union[dict, str], scope: Optional[str] = None) -> str:
        from mmkd.models.distillers.teacher import resolve_model_config
        model_cfg = copy.deepcopy(resolve_model_config(model_cfg))
        strip_pretrained(model_cfg)
        key = config_digest(model_cfg)
        if key not in self._paths:
            path = osp.join(self.root, f'{model_cfg.get("type", "model")}_{key}.pth')
            if not osp.isfile(path):
                write_random_checkpoint(model_cfg, path, scope or self.scope)
            self._paths[key] = path
        return self._paths[key]
