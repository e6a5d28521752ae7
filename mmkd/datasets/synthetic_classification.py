# Copyright (c) mmkd contributors. All rights reserved.
"""A deterministic synthetic image-classification dataset in the CIFAR-100 format, and a
tiny ImageNet-layout folder.

**CIFAR format** (:func:`generate_cifar_dataset`). 32×32 RGB images of one object each;
a class is a combination of three factors:

* shape (5): ``disc``, ``square``, ``triangle``, ``cross``, ``star``;
* colour (5): ``red``, ``yellow``, ``green``, ``blue``, ``purple`` (hue jittered ±15°,
  random saturation and brightness);
* texture (4): ``plain``, ``stripes``, ``checker``, ``dots`` (period 3.5–5.5 px, random
  orientation and phase, drawn inside the object).

All 100 combinations make the default 100 classes (``<shape>_<colour>_<texture>``); with
``num_classes < 100`` the first ``num_classes`` combinations of a fixed shuffled order are
used (every factor value still occurs). The nuisances are what make capacity matter: the
object's size (40–75 % of the image), position, rotation and aspect ratio vary, the
background is a random low-saturation gradient with soft blobs, a smaller *distractor*
shape of a random colour sits behind the object in 60 % of the images, and the image gets
brightness / contrast jitter and Gaussian noise. The fine textures and shape outlines at
this resolution need the depth and width of a bigger network; a tiny one gets colour right
quickly and the rest partly.

Files, exactly as the CIFAR-100 python version (and mmpretrain's ``CIFAR100`` reader)
has them::

    out_dir/cifar-100-python/train   pickle: {'filenames', 'batch_label', 'fine_labels',
                                              'coarse_labels', 'data': uint8 [N, 3072]}
    out_dir/cifar-100-python/test    same
    out_dir/cifar-100-python/meta    pickle: {'fine_label_names', 'coarse_label_names'}
    out_dir/generate_params.json     the parameters (stamp; written last)

``data`` rows are the R, G and B planes of one image, each row-major 32×32 (the CIFAR
layout); coarse labels are the shape. mmpretrain's ``CIFAR100`` checks the md5 sums of
the real files, so the generated set is read by :class:`~mmkd.datasets.SyntheticCIFAR100`,
which is that class with the checksums off and the class names read from ``meta``.

**ImageNet layout** (:func:`generate_imagenet_folder`): ``train/<class>/*.JPEG``,
``val/<class>/*.JPEG`` and ``meta/{train,val}.txt`` (``<class>/<file> <label>`` lines),
as mmpretrain's ``ImageNet`` dataset reads them; used by the tests of the ImageNet
configs.

Determinism: image ``i`` of a split is drawn from
``numpy.random.default_rng([seed, split_index, i])`` and the pickles are written with a
fixed protocol, so the same arguments give byte-identical files, and a test image does
not depend on ``num_train``.
"""
import colorsys
import json
import os
import os.path as osp
import pickle
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

__all__ = [
    'SHAPES', 'COLOURS', 'TEXTURES', 'CLS_GENERATOR_VERSION', 'CIFAR_FOLDER',
    'class_names', 'class_factors', 'render_cls_sample', 'generate_cifar_dataset',
    'cls_generation_params', 'read_cls_stamp', 'generate_imagenet_folder'
]

SHAPES: Tuple[str, ...] = ('disc', 'square', 'triangle', 'cross', 'star')
#: colour name -> hue in degrees
COLOURS: Dict[str, float] = {'red': 0., 'yellow': 55., 'green': 120., 'blue': 220.,
                             'purple': 285.}
TEXTURES: Tuple[str, ...] = ('plain', 'stripes', 'checker', 'dots')
MAX_CLASSES = len(SHAPES) * len(COLOURS) * len(TEXTURES)
#: Bump whenever the rendered data changes, so stale stamps are detected.
CLS_GENERATOR_VERSION = 1
STAMP_FILE = 'generate_params.json'
CIFAR_FOLDER = 'cifar-100-python'
IMG_SIZE = 32
_SUPERSAMPLE = 4  # drawn at 128x128, area-downsampled to 32x32 (anti-aliasing)
_SPLITS = ('train', 'test')
_PICKLE_PROTOCOL = 4  # Python 3 (raw bytes; protocol 2 inflates uint8 data ~1.4x)


# ------------------------------------------------------------------------ classes
def _combination_order() -> List[Tuple[int, int, int]]:
    """All (shape, colour, texture) index triples in a fixed shuffled order."""
    combos = [(s, c, t) for s in range(len(SHAPES)) for c in range(len(COLOURS))
              for t in range(len(TEXTURES))]
    order = np.random.default_rng(20240601).permutation(len(combos))
    return [combos[i] for i in order]


def class_factors(num_classes: int = MAX_CLASSES) -> List[Tuple[int, int, int]]:
    """``(shape, colour, texture)`` indices of each class ``0 .. num_classes - 1``.

    100 classes are all combinations in factor order (class ``k`` = shape ``k // 20``,
    colour ``k // 4 % 5``, texture ``k % 4``); fewer take the first ``num_classes`` of a
    fixed shuffled order.
    """
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f'num_classes must be in [2, {MAX_CLASSES}], got {num_classes}.')
    if num_classes == MAX_CLASSES:
        return [(s, c, t) for s in range(len(SHAPES)) for c in range(len(COLOURS))
                for t in range(len(TEXTURES))]
    return _combination_order()[:num_classes]


def class_names(num_classes: int = MAX_CLASSES) -> List[str]:
    """``'<shape>_<colour>_<texture>'`` of each class."""
    colours = list(COLOURS)
    return [f'{SHAPES[s]}_{colours[c]}_{TEXTURES[t]}' for s, c, t in
            class_factors(num_classes)]


# ------------------------------------------------------------------------ rendering
def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.) / 360., s, v), np.float32) * 255.


def _shape_polygon(shape: str, cx: float, cy: float, radius: float, angle: float,
                   aspect: float) -> Optional[np.ndarray]:
    """Vertices ``[P, 2]`` (x, y) of ``shape`` (``None`` for the disc, drawn as an
    ellipse)."""
    if shape == 'disc':
        return None
    if shape == 'square':
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * 0.8
    elif shape == 'triangle':
        a = np.deg2rad([-90, 30, 150])
        pts = np.stack([np.cos(a), np.sin(a)], 1) * 1.05
    elif shape == 'cross':
        w = 0.36
        pts = np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1],
                        [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w]], np.float32)
    elif shape == 'star':
        a = np.deg2rad(np.arange(10) * 36. - 90.)
        r = np.where(np.arange(10) % 2 == 0, 1.05, 0.45)
        pts = np.stack([np.cos(a) * r, np.sin(a) * r], 1)
    else:
        raise ValueError(f'unknown shape {shape!r}')
    pts = pts * np.array([aspect, 1. / aspect], np.float32)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]], np.float32)
    return (pts @ rot.T) * radius + np.array([cx, cy], np.float32)


def _shape_mask(size: int, shape: str, cx: float, cy: float, radius: float, angle: float,
                aspect: float) -> np.ndarray:
    """``[size, size]`` float32 mask in [0, 1] (anti-aliased edges)."""
    mask = np.zeros((size, size), np.uint8)
    shift = 4  # sub-pixel vertices
    poly = _shape_polygon(shape, cx, cy, radius, angle, aspect)
    if poly is None:
        axes = (int(radius * aspect * 0.95 * 16), int(radius / aspect * 0.95 * 16))
        cv2.ellipse(mask, (int(cx * 16), int(cy * 16)), axes, float(np.rad2deg(angle)), 0,
                    360, 255, -1, cv2.LINE_AA, shift)
    else:
        cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, shift)
    return mask.astype(np.float32) / 255.


def _texture(size: int, texture: str, rng: np.random.Generator) -> np.ndarray:
    """``[size, size]`` multiplicative shading in [low, 1] for the object's fill."""
    if texture == 'plain':
        return np.ones((size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(3.5, 5.5) * _SUPERSAMPLE
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    phase_u, phase_v = rng.uniform(0, period, size=2)
    low = rng.uniform(0.35, 0.6)
    if texture == 'stripes':
        on = ((u + phase_u) % period) < period / 2
    elif texture == 'checker':
        on = (((u + phase_u) % period) < period / 2) ^ (((v + phase_v) % period) < period / 2)
    elif texture == 'dots':
        du = ((u + phase_u) % period) - period / 2
        dv = ((v + phase_v) % period) - period / 2
        on = (du**2 + dv**2) > (period * 0.3)**2
    else:
        raise ValueError(f'unknown texture {texture!r}')
    return np.where(on, 1.0, low).astype(np.float32)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """``[size, size, 3]`` float32 RGB: low-saturation gradient plus soft blobs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0 = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.35), rng.uniform(0.15, 0.9))
    c1 = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.35), rng.uniform(0.15, 0.9))
    theta = rng.uniform(0, 2 * np.pi)
    t = np.clip((xx - .5) * np.cos(theta) + (yy - .5) * np.sin(theta) + .5, 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    for _ in range(rng.integers(1, 4)):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.35)
        blob = np.exp(-((xx - cx)**2 + (yy - cy)**2) / (2 * r**2))[..., None]
        img = img + blob * rng.uniform(-60, 60, size=3).astype(np.float32)
    return img


def render_cls_sample(factors: Tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """One ``[32, 32, 3]`` uint8 RGB image of the class with ``factors``
    ``(shape, colour, texture)`` indices."""
    size = IMG_SIZE * _SUPERSAMPLE
    img = _background(size, rng)
    if rng.uniform() < 0.6:  # distractor, behind the object, plain, any colour
        d_radius = rng.uniform(0.14, 0.22) * size
        d_mask = _shape_mask(size, SHAPES[rng.integers(len(SHAPES))],
                             rng.uniform(0.15, 0.85) * size, rng.uniform(0.15, 0.85) * size,
                             d_radius, rng.uniform(0, 2 * np.pi), rng.uniform(0.8, 1.25))
        d_colour = _hsv(rng.uniform(0, 360), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
        img = img * (1 - d_mask[..., None]) + d_colour * d_mask[..., None]

    shape, colour, texture = factors
    radius = rng.uniform(0.20, 0.375) * size
    margin = radius * 0.7
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    mask = _shape_mask(size, SHAPES[shape], cx, cy, radius, rng.uniform(0, 2 * np.pi),
                       rng.uniform(0.8, 1.25))
    hue = list(COLOURS.values())[colour] + rng.uniform(-15, 15)
    fill = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
    shading = _texture(size, TEXTURES[texture], rng)
    obj = fill[None, None, :] * shading[..., None]
    img = img * (1 - mask[..., None]) + obj * mask[..., None]

    img = cv2.resize(np.clip(img, 0, 255), (IMG_SIZE, IMG_SIZE),
                     interpolation=cv2.INTER_AREA)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
    img = (img - 128.) * contrast + 128. + brightness
    img = img + rng.normal(0, rng.uniform(3, 10), size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------ CIFAR files
def cls_generation_params(num_classes: int, num_train_per_class: int,
                          num_test_per_class: int, seed: int) -> dict:
    """The parameters that fully determine the generated CIFAR-format data."""
    return dict(generator='mmkd.datasets.synthetic_classification',
                version=CLS_GENERATOR_VERSION, num_classes=int(num_classes),
                num_train_per_class=int(num_train_per_class),
                num_test_per_class=int(num_test_per_class), seed=int(seed))


def read_cls_stamp(out_dir: str) -> Optional[dict]:
    """The parameters recorded in ``out_dir`` (``None`` if absent or unreadable)."""
    try:
        with open(osp.join(out_dir, STAMP_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _split_labels(num_classes: int, per_class: int, split_index: int,
                  seed: int) -> np.ndarray:
    """Class of every image of a split: ``per_class`` of each, in a seeded order."""
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng([seed, split_index, 10**6]).permutation(labels)


def _write_pickle(path: str, obj: dict) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        pickle.dump(obj, f, protocol=_PICKLE_PROTOCOL)
    os.replace(tmp, path)


def generate_cifar_dataset(out_dir: str,
                           num_classes: int = MAX_CLASSES,
                           num_train_per_class: int = 100,
                           num_test_per_class: int = 20,
                           seed: int = 0) -> dict:
    """Write the CIFAR-100-format dataset under ``out_dir`` (see the module docstring).

    Args:
        out_dir (str): root; the files go to ``out_dir/cifar-100-python/``.
        num_classes (int): 2 .. 100 (default: all 100 combinations).
        num_train_per_class (int): training images per class.
        num_test_per_class (int): test images per class.
        seed (int): seed of everything.

    Returns:
        dict: ``num_images`` per split, ``classes`` and the folder written.
    """
    if num_train_per_class < 1 or num_test_per_class < 1:
        raise ValueError('num_train_per_class and num_test_per_class must be >= 1.')
    factors = class_factors(num_classes)
    names = class_names(num_classes)
    folder = osp.join(out_dir, CIFAR_FOLDER)
    os.makedirs(folder, exist_ok=True)
    stamp = osp.join(out_dir, STAMP_FILE)
    if osp.exists(stamp):
        os.remove(stamp)  # invalid until every file is rewritten
    counts = {}
    for split_index, (split, per_class) in enumerate(
            zip(_SPLITS, (num_train_per_class, num_test_per_class))):
        labels = _split_labels(num_classes, per_class, split_index, seed)
        data = np.empty((len(labels), 3 * IMG_SIZE * IMG_SIZE), np.uint8)
        for i, label in enumerate(labels):
            rng = np.random.default_rng([seed, split_index, i])
            img = render_cls_sample(factors[label], rng)  # [32, 32, 3] RGB
            data[i] = img.transpose(2, 0, 1).reshape(-1)  # R, G, B planes
        _write_pickle(osp.join(folder, split), {
            'filenames': [f'{split}_{i:06d}.png' for i in range(len(labels))],
            'batch_label': f'mmkd synthetic {split} (seed {seed})',
            'fine_labels': [int(v) for v in labels],
            'coarse_labels': [int(factors[v][0]) for v in labels],
            'data': data,
        })
        counts[split] = len(labels)
    _write_pickle(osp.join(folder, 'meta'), {
        'fine_label_names': names,
        'coarse_label_names': list(SHAPES),
    })
    params = cls_generation_params(num_classes, num_train_per_class, num_test_per_class,
                                   seed)
    with open(stamp, 'w') as f:
        json.dump(params, f, indent=2, sort_keys=True)
    return dict(num_images=counts, classes=names, folder=folder)


# ------------------------------------------------------------------------ ImageNet folder
def generate_imagenet_folder(out_dir: str,
                             num_classes: int = 4,
                             num_train_per_class: int = 2,
                             num_val_per_class: int = 1,
                             img_size: int = 64,
                             seed: int = 0) -> dict:
    """A tiny folder in ImageNet layout (``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``,
    ``meta/{train,val}.txt``) for mmpretrain's ``ImageNet`` dataset: the CIFAR-style
    samples, upscaled to ``img_size`` and JPEG-encoded. Class folders are named
    ``n<8 digits>`` like ImageNet's synsets.

    Returns:
        dict: ``classes`` (folder names) and ``num_images`` per split.
    """
    factors = class_factors(max(num_classes, 2))[:num_classes]
    synsets = [f'n{index:08d}' for index in range(num_classes)]
    counts = {}
    for split_index, (split, per_class) in enumerate(
            (('train', num_train_per_class), ('val', num_val_per_class))):
        lines = []
        for label, synset in enumerate(synsets):
            os.makedirs(osp.join(out_dir, split, synset), exist_ok=True)
            for j in range(per_class):
                rng = np.random.default_rng([seed, split_index, label, j])
                img = render_cls_sample(factors[label], rng)
                img = cv2.resize(img, (img_size, img_size), interpolation=cv2.INTER_LINEAR)
                name = f'{synset}/{synset}_{j:04d}.JPEG'
                cv2.imwrite(osp.join(out_dir, split, name), img[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                lines.append(f'{name} {label}')
        os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
        with open(osp.join(out_dir, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        counts[split] = len(lines)
    return dict(classes=synsets, num_images=counts)

