"""Reading and writing the per-class teacher feature means used by the ND loss.

The file is a plain ``torch.save`` of ``dict(class_means=[C, D] float32, counts=[C] int64,
meta=dict(...))``. ``meta`` records where the means came from, e.g. ``teacher_checkpoint``,
``dataset``, ``feature`` (the recorded module), ``num_classes`` and ``includes_background``
(mmdet RoI labels use index ``num_classes`` for background, so such a table has
``num_classes + 1`` rows).
"""
import os
import os.path as osp
from typing import Tuple

import torch
from torch import Tensor

CLASS_MEANS_KEYS = ('class_means', 'counts', 'meta')


def save_class_means(path: str, means: Tensor, counts: Tensor, meta: dict) -> None:
    """Write a class-means file.

    Args:
        path (str): output file (parent folders are created).
        means (Tensor): ``[C, D]`` per-class mean teacher embedding (rows of classes with
            no sample should be zero).
        counts (Tensor): ``[C]`` number of samples that went into each row.
        meta (dict): provenance (teacher checkpoint, dataset, feature name, num_classes,
            includes_background, ...); must be plain Python values.
    """
    if not isinstance(means, Tensor) or means.dim() != 2:
        raise ValueError(f'save_class_means: means must be a [C, D] tensor, got '
                         f'{getattr(means, "shape", type(means))}.')
    if not isinstance(counts, Tensor) or counts.shape != means.shape[:1]:
        raise ValueError(f'save_class_means: counts must be a [C]={tuple(means.shape[:1])} '
                         f'tensor, got {getattr(counts, "shape", type(counts))}.')
    if not isinstance(meta, dict):
        raise ValueError(f'save_class_means: meta must be a dict, got {type(meta).__name__}.')
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)
    torch.save(
        dict(class_means=means.detach().float().cpu().contiguous(),
             counts=counts.detach().long().cpu(),
             meta=dict(meta)), path)


def load_class_means(path: str) -> Tuple[Tensor, Tensor, dict]:
    """Read a file written by :func:`save_class_means`.

    Args:
        path (str): the file.

    Returns:
        tuple: ``means [C, D]`` float32, ``counts [C]`` int64, ``meta`` dict (all on CPU).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"class-means file '{path}' not found; generate it with tools/class_means.py "
            f'(runs the frozen teacher over the training set).')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # not a torch file, or holds arbitrary pickled objects
        raise ValueError(
            f"'{path}' is not a class-means file (torch.load failed: {err}); regenerate it "
            f'with tools/class_means.py.') from err
    if not isinstance(data, dict) or not all(k in data for k in CLASS_MEANS_KEYS):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"'{path}' is not a class-means file: expected a dict with keys "
            f'{list(CLASS_MEANS_KEYS)}, found {found}; regenerate it with '
            f'tools/class_means.py.')
    means, counts, meta = data['class_means'], data['counts'], data['meta']
    if not isinstance(means, Tensor) or means.dim() != 2 or not isinstance(
            counts, Tensor) or counts.shape != means.shape[:1]:
        raise ValueError(
            f"'{path}' is a malformed class-means file: class_means must be [C, D] and "
            f'counts [C], found {getattr(means, "shape", type(means))} and '
            f'{getattr(counts, "shape", type(counts))}.')
    return means.float(), counts, dict(meta)
