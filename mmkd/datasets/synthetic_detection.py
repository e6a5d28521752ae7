# Copyright (c) mmkd contributors. All rights reserved.
"""A deterministic synthetic object-detection dataset.

Small images of filled geometric shapes (``circle``, ``square``,
``triangle``, ``cross``) on a textured, cluttered, noisy background. The
classes differ in *form* only: every object gets a random colour drawn from
the same distribution, so colour carries no class information. Objects vary
in scale (about 8 to 60 px for 128 px images), rotation and aspect ratio, may
occlude each other, and are surrounded by clutter (lines, arcs, soft blobs)
that is not annotated.

The data is meant for CPU-sized distillation experiments: a small detector
can learn it within minutes, but small and occluded objects keep it from
saturating.

One image set is written once and described in two annotation formats::

    out_dir/
        VOCdevkit/SYNTH/JPEGImages/000001.jpg ...
        VOCdevkit/SYNTH/Annotations/000001.xml ...
        VOCdevkit/SYNTH/ImageSets/Main/trainval.txt   (train ids)
        VOCdevkit/SYNTH/ImageSets/Main/test.txt       (val ids)
        annotations/instances_train.json                (COCO format)
        annotations/instances_val.json
        generate_params.json                            (stamp, see below)

Box conventions (``W``, ``H``: image width and height). An object whose full
shape covers pixel columns ``c0..c1`` and rows ``r0..r1`` (inclusive) has

* COCO ``bbox = [c0, r0, c1 - c0 + 1, r1 - r0 + 1]`` (``[x, y, w, h]``),
  which mmdet's ``CocoDataset`` turns into
  ``[x1, y1, x2, y2] = [c0, r0, c1 + 1, r1 + 1]``;
* VOC ``xmin, ymin, xmax, ymax = c0 + 1, r0 + 1, c1 + 2, r1 + 2``. mmdet's
  ``XMLDataset`` subtracts 1 from all four values, so both formats load as
  the same ``[x1, y1, x2, y2]`` boxes. Objects never touch the image border
  (``c1 <= W - 2``), hence ``xmax <= W`` and ``ymax <= H``.

The box is the tight box of the *full* shape, also when another object hides
part of it; an object is dropped from the annotations when more than
``MAX_OCCLUSION`` of its pixels are hidden (it stays in the image).

Determinism: image ``i`` of a split is drawn from
``numpy.random.default_rng([seed, split_index, i])``, JPEGs are written by
OpenCV at quality 95 and JSON/XML are serialised with a fixed layout, so the
same arguments give byte-identical files (on the same OpenCV/libjpeg build),
and the content of a val image does not depend on ``num_train``.
"""
import json
import os
import os.path as osp
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    'CLASSES', 'PALETTE', 'GENERATOR_VERSION', 'STAMP_FILE', 'SyntheticObject',
    'detection_metainfo', 'render_sample', 'generate_detection_dataset',
    'validate_coco_annotations', 'coco_statistics', 'read_stamp',
    'generation_params'
]

CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'cross')
PALETTE: List[Tuple[int, int, int]] = [(220, 20, 60), (0, 128, 255),
                                       (0, 170, 0), (255, 165, 0)]
#: Bump whenever the rendered data changes, so stale stamps are detected.
GENERATOR_VERSION = 2
#: File recording the generation parameters, written last.
STAMP_FILE = 'generate_params.json'
#: Objects with more than this fraction of their pixels hidden are dropped.
MAX_OCCLUSION = 0.7
MAX_OBJECTS = 6
JPEG_QUALITY = 95

_SPLITS = ('train', 'val')
_VOC_SETS = {'train': 'trainval', 'val': 'test'}
_FORMATS = ('coco', 'voc')
# fixed-point precision for cv2.fillPoly (coordinates are multiplied by 16)
_SHIFT = 4
_REGEN_HINT = ('regenerate it with '
               '`python tools/generate_data.py --out <data_root>`')


@dataclass
class SyntheticObject:
    """One rendered object.

    Attributes:
        label (int): Class index into :data:`CLASSES`.
        bbox (np.ndarray): Tight box of the full shape, ``(4,)`` int64
            ``[x1, y1, x2, y2]`` with exclusive ``x2, y2`` (pixel-edge
            coordinates, ``x2 - x1`` is the width in pixels).
        mask (np.ndarray): Full-shape mask, ``(H, W)`` bool.
        visible (np.ndarray): Visible part of the shape, ``(H, W)`` bool.
        area (int): Number of pixels of the full shape.
        visible_fraction (float): ``visible.sum() / mask.sum()``.
    """
    label: int
    bbox: np.ndarray
    mask: np.ndarray
    visible: np.ndarray
    area: int
    visible_fraction: float


def detection_metainfo() -> dict:
    """Return ``dict(classes=CLASSES, palette=PALETTE)`` for configs."""
    return dict(classes=CLASSES, palette=list(PALETTE))


# --------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------
def _size_range(img_size: int) -> Tuple[float, float]:
    """Object size range (px) for a square image of side ``img_size``.

    ``(8, 60)`` for 128 px images, scaled linearly otherwise (at least 6 px).
    """
    lo = max(6.0, img_size / 16.0)
    hi = max(lo + 4.0, img_size * 60.0 / 128.0)
    return lo, hi


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate ``(N, 2)`` points about the origin by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _shape_polygon(label: int, size: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Vertices of one shape centred on the origin.

    Args:
        label (int): Class index into :data:`CLASSES`.
        size (float): Nominal extent in pixels (diameter / side / bar length).
        rng (np.random.Generator): Random source.

    Returns:
        np.ndarray: ``(N, 2)`` float64 ``(x, y)`` vertices.
    """
    name = CLASSES[label]
    half = size / 2.0
    angle = rng.uniform(0.0, np.pi)
    if name == 'circle':
        aspect = rng.uniform(0.87, 1.15)
        t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
        pts = np.stack([half * aspect * np.cos(t), half / aspect * np.sin(t)],
                       axis=1)
    elif name == 'square':
        aspect = rng.uniform(0.87, 1.15)
        hx, hy = half * aspect, half / aspect
        pts = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    elif name == 'triangle':
        # roughly equilateral with side ~= size, corners jittered
        radius = size / np.sqrt(3.0) * rng.uniform(0.9, 1.1, size=3)
        t = np.deg2rad(np.array([90.0, 210.0, 330.0]) +
                       rng.uniform(-8.0, 8.0, size=3))
        pts = np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
    elif name == 'cross':
        w = half * rng.uniform(0.28, 0.4)
        pts = np.array([[-w, -half], [w, -half], [w, -w], [half, -w],
                        [half, w], [w, w], [w, half], [-w, half], [-w, w],
                        [-half, w], [-half, -w], [-w, -w]])
    else:  # pragma: no cover - CLASSES and this function must agree
        raise ValueError(f'no polygon for class {name!r}')
    return _rotate(pts, angle)


def _fill_polygon(shape_hw: Tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Rasterise a float polygon into an ``(H, W)`` bool mask (sub-pixel)."""
    mask = np.zeros(shape_hw, np.uint8)
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool)


def _mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight ``[x1, y1, x2, y2]`` box (exclusive x2, y2) of a non-empty
    mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.int64)


def _background(rng: np.random.Generator, img_size: int) -> np.ndarray:
    """Textured background.

    A random base colour, a smooth low-frequency colour field (bicubic
    upsampled random grid) and a fine grain texture.

    Returns:
        np.ndarray: ``(H, W, 3)`` float32 BGR image in ``[0, 255]``.
    """
    base = rng.uniform(40.0, 215.0, size=3)
    grid = int(rng.integers(3, 8))
    coarse = rng.normal(0.0, 1.0, size=(grid, grid, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (img_size, img_size),
                        interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, 1.0, size=(img_size, img_size)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), rng.uniform(0.7, 1.5))
    img = (base.astype(np.float32) + smooth * rng.uniform(8.0, 22.0) +
           grain[..., None] * rng.uniform(4.0, 10.0))
    return img


def _random_colour(rng: np.random.Generator, avoid: np.ndarray,
                   min_dist: float) -> np.ndarray:
    """A uniform random BGR colour at least ``min_dist`` (L2) from
    ``avoid``."""
    for _ in range(100):
        colour = rng.uniform(0.0, 255.0, size=3)
        if np.linalg.norm(colour - avoid) >= min_dist:
            return colour
    # (practically unreachable) push the last draw away from ``avoid``
    return np.where(avoid > 127.5, 0.0, 255.0)


def _draw_clutter(img: np.ndarray, rng: np.random.Generator) -> None:
    """Draw unannotated distractors in place: lines, arcs and soft blobs.

    Args:
        img (np.ndarray): ``(H, W, 3)`` float32 image, modified in place.
        rng (np.random.Generator): Random source.
    """
    h, w = img.shape[:2]
    scale = w / 128.0
    mean = img.reshape(-1, 3).mean(axis=0)
    # straight lines
    for _ in range(int(rng.integers(1, 6))):
        p0 = rng.uniform(0, w, size=2)
        length = rng.uniform(10, 70) * scale
        theta = rng.uniform(0, 2 * np.pi)
        p1 = p0 + length * np.array([np.cos(theta), np.sin(theta)])
        colour = _random_colour(rng, mean, 40.0)
        cv2.line(img, tuple(int(v) for v in np.round(p0 * 16)),
                 tuple(int(v) for v in np.round(p1 * 16)),
                 tuple(float(c) for c in colour), int(rng.integers(1, 3)),
                 cv2.LINE_AA, _SHIFT)
    # open arcs (parts of ellipses, never closed)
    for _ in range(int(rng.integers(0, 4))):
        centre = tuple(int(v) for v in rng.integers(0, w, size=2))
        axes = tuple(int(v) for v in rng.integers(4, max(5, int(25 * scale)),
                                                  size=2))
        start = float(rng.uniform(0, 360))
        colour = _random_colour(rng, mean, 40.0)
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), start,
                    start + float(rng.uniform(60, 200)),
                    tuple(float(c) for c in colour), int(rng.integers(1, 3)),
                    cv2.LINE_AA)
    # soft blobs: irregular polygons, blurred and alpha-blended
    n_blobs = int(rng.integers(1, 5))
    if n_blobs:
        layer = np.zeros((h, w), np.float32)
        colour_map = np.zeros((h, w, 3), np.float32)
        for _ in range(n_blobs):
            k = int(rng.integers(5, 10))
            t = np.sort(rng.uniform(0, 2 * np.pi, size=k))
            r = rng.uniform(5, 14, size=k) * scale
            pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
            pts += rng.uniform(0, w, size=2)
            blob = _fill_polygon((h, w), pts)
            layer[blob] = rng.uniform(0.3, 0.65)
            colour_map[blob] = _random_colour(rng, mean, 40.0)
        sigma = rng.uniform(1.5, 3.0) * scale
        alpha = cv2.GaussianBlur(layer, (0, 0), sigma)[..., None]
        colour_map = cv2.GaussianBlur(colour_map, (0, 0), sigma)
        weight = cv2.GaussianBlur((layer > 0).astype(np.float32), (0, 0),
                                  sigma)[..., None]
        colour_map = colour_map / np.maximum(weight, 1e-6)
        img[...] = img * (1 - alpha) + colour_map * alpha


def _place(pts: np.ndarray, img_size: int,
           rng: np.random.Generator) -> Optional[np.ndarray]:
    """Translate shape vertices to a random position fully inside the image.

    The vertices are kept inside ``[1, img_size - 3]`` so the rasterised mask
    never touches the last row/column (see the module docstring).

    Returns:
        np.ndarray | None: ``(N, 2)`` translated vertices, or ``None`` when the
        shape does not fit.
    """
    lo_xy = 1.0 - pts.min(axis=0)
    hi_xy = (img_size - 3.0) - pts.max(axis=0)
    if np.any(hi_xy < lo_xy):
        return None
    return pts + rng.uniform(lo_xy, hi_xy)


def render_sample(
        rng: np.random.Generator,
        img_size: int = 128,
        num_objects: Optional[int] = None,
        noise: bool = True,
        return_background: bool = False
) -> Tuple[np.ndarray, List[SyntheticObject]]:
    """Render one image and its objects.

    Args:
        rng (np.random.Generator): Random source; the image is a pure function
            of its state.
        img_size (int): Image width and height in pixels. Defaults to 128.
        num_objects (int, optional): Number of shapes to draw; random in
            ``[1, MAX_OBJECTS]`` when ``None``.
        noise (bool): Add Gaussian pixel noise. Defaults to True.
        return_background (bool): Also return the image before the objects
            were drawn (background and clutter, no noise). For tests.

    Returns:
        tuple: ``(img, objects)`` or ``(img, objects, background)``.
        ``img`` is an ``(H, W, 3)`` uint8 BGR image, ``objects`` the list of
        annotated :class:`SyntheticObject` (drawing order; objects hidden by
        more than ``MAX_OCCLUSION`` are left out), ``background`` an
        ``(H, W, 3)`` float32 image.
    """
    img = _background(rng, img_size)
    _draw_clutter(img, rng)
    background = img.copy() if return_background else None
    bg_mean = img.reshape(-1, 3).mean(axis=0)

    n = int(rng.integers(1, MAX_OBJECTS + 1)) if num_objects is None \
        else int(num_objects)
    lo, hi = _size_range(img_size)
    yy, xx = np.mgrid[0:img_size, 0:img_size].astype(np.float32)
    drawn: List[Tuple[int, np.ndarray]] = []
    owner = np.full((img_size, img_size), -1, np.int32)
    for _ in range(n):
        label = int(rng.integers(len(CLASSES)))
        mask = None
        for _attempt in range(10):
            size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            pts = _place(_shape_polygon(label, size, rng), img_size, rng)
            if pts is None:
                continue
            mask = _fill_polygon((img_size, img_size), pts)
            if mask.any():
                break
        if mask is None or not mask.any():
            continue
        # flat colour with a mild linear shading across the object
        colour = _random_colour(rng, bg_mean, 70.0).astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        x0, y0 = pts.mean(axis=0)
        ramp = ((xx - x0) * np.cos(theta) +
                (yy - y0) * np.sin(theta)) / max(size, 1.0)
        shade = colour + ramp[..., None] * rng.uniform(0.0, 40.0)
        img[mask] = shade[mask]
        owner[mask] = len(drawn)
        drawn.append((label, mask))

    objects = []
    for idx, (label, mask) in enumerate(drawn):
        visible = owner == idx
        area = int(mask.sum())
        frac = float(visible.sum()) / area
        if frac < 1.0 - MAX_OCCLUSION:
            continue
        objects.append(
            SyntheticObject(
                label=label,
                bbox=_mask_to_box(mask),
                mask=mask,
                visible=visible,
                area=area,
                visible_fraction=frac))

    if noise:
        sigma = rng.uniform(3.0, 10.0)
        img = img + rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if return_background:
        return out, objects, background
    return out, objects


# --------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------
def _write_bytes(path: str, data: bytes) -> None:
    with open(path, 'wb') as f:
        f.write(data)


def _write_json(path: str, obj: dict) -> None:
    _write_bytes(path,
                 (json.dumps(obj, sort_keys=True, indent=1) + '\n').encode())


def _voc_xml(file_name: str, img_size: int,
             objects: Sequence[SyntheticObject]) -> bytes:
    """Serialise one image's objects as a Pascal VOC annotation.

    Coordinates are ``xmin, ymin = x1 + 1, y1 + 1`` and ``xmax, ymax = x2 + 1,
    y2 + 1`` (see the module docstring for why).
    """
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'SYNTH'
    ET.SubElement(root, 'filename').text = file_name
    source = ET.SubElement(root, 'source')
    ET.SubElement(source, 'database').text = 'mmkd synthetic shapes'
    size = ET.SubElement(root, 'size')
    ET.SubElement(size, 'width').text = str(img_size)
    ET.SubElement(size, 'height').text = str(img_size)
    ET.SubElement(size, 'depth').text = '3'
    ET.SubElement(root, 'segmented').text = '0'
    for obj in objects:
        node = ET.SubElement(root, 'object')
        ET.SubElement(node, 'name').text = CLASSES[obj.label]
        ET.SubElement(node, 'pose').text = 'Unspecified'
        ET.SubElement(node, 'truncated').text = '0'
        ET.SubElement(node, 'difficult').text = '0'
        box = ET.SubElement(node, 'bndbox')
        for key, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), obj.bbox):
            ET.SubElement(box, key).text = str(int(value) + 1)
    ET.indent(root, space='  ')
    return ET.tostring(root, encoding='utf-8') + b'\n'


def _coco_annotation(ann_id: int, img_id: int,
                     obj: SyntheticObject) -> dict:
    """COCO annotation dict; ``bbox`` is ``[x, y, w, h]``, ``area`` the pixel
    count of the full shape."""
    x1, y1, x2, y2 = (int(v) for v in obj.bbox)
    return dict(
        id=ann_id,
        image_id=img_id,
        category_id=obj.label + 1,
        bbox=[x1, y1, x2 - x1, y2 - y1],
        area=obj.area,
        iscrowd=0,
        segmentation=[])


def generation_params(num_train: int, num_val: int, img_size: int, seed: int,
                      formats: Sequence[str]) -> dict:
    """The parameters recorded in the stamp file (no paths, no timestamps)."""
    return dict(
        generator_version=GENERATOR_VERSION,
        num_train=int(num_train),
        num_val=int(num_val),
        img_size=int(img_size),
        seed=int(seed),
        formats=sorted(set(formats)),
        classes=list(CLASSES))


def read_stamp(out_dir: str) -> Optional[dict]:
    """Return the parameters stored by the last complete generation in
    ``out_dir``, or ``None`` if there is no (readable) stamp."""
    path = osp.join(out_dir, STAMP_FILE)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _remove_stale(directory: str, suffix: str, keep: set) -> None:
    """Delete ``NNNNNN<suffix>`` files in ``directory`` not listed in ``keep``
    (left over from a larger earlier generation)."""
    pattern = re.compile(r'^\d{6}' + re.escape(suffix) + '$')
    for name in os.listdir(directory):
        if pattern.match(name) and name not in keep:
            os.remove(osp.join(directory, name))


def generate_detection_dataset(out_dir: str,
                               num_train: int = 600,
                               num_val: int = 150,
                               img_size: int = 128,
                               seed: int = 0,
                               formats: Sequence[str] = ('coco', 'voc')
                               ) -> dict:
    """Generate the synthetic shapes dataset (see the module docstring).

    Train images get ids ``1..num_train``, val images
    ``num_train + 1..num_train + num_val``; file names are the 6-digit id.
    Existing files are overwritten and this generator's own files left from an
    earlier, different generation (extra images, annotations of a format not
    requested now) are deleted; nothing else in ``out_dir`` is touched. The
    stamp file is written last, so its presence marks a complete generation.

    Args:
        out_dir (str): Output root (created if missing).
        num_train (int): Number of train images. Defaults to 600.
        num_val (int): Number of val images. Defaults to 150.
        img_size (int): Square image side in pixels. Defaults to 128.
        seed (int): Random seed. Defaults to 0.
        formats (Sequence[str]): Any of ``'coco'``, ``'voc'``. The images are
            always written (under ``VOCdevkit/SYNTH/JPEGImages``).

    Returns:
        dict: Summary with keys ``out_dir``, ``img_dir``, ``coco`` (split ->
        json path, if written), ``voc`` (``data_root`` and split -> image-set
        path, if written), ``num_images`` and ``num_objects`` (split -> count)
        and ``params`` (as stored in the stamp).
    """
    formats = tuple(formats)
    unknown = set(formats) - set(_FORMATS)
    if unknown:
        raise ValueError(f'unknown formats {sorted(unknown)}; '
                         f'choose from {_FORMATS}')
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError('num_train and num_val must be >= 0, not both 0')
    if img_size < 32:
        raise ValueError(f'img_size must be >= 32, got {img_size}')
    params = generation_params(num_train, num_val, img_size, seed, formats)

    voc_root = osp.join(out_dir, 'VOCdevkit', 'SYNTH')
    img_dir = osp.join(voc_root, 'JPEGImages')
    xml_dir = osp.join(voc_root, 'Annotations')
    set_dir = osp.join(voc_root, 'ImageSets', 'Main')
    coco_dir = osp.join(out_dir, 'annotations')
    os.makedirs(img_dir, exist_ok=True)
    if 'voc' in formats:
        os.makedirs(xml_dir, exist_ok=True)
        os.makedirs(set_dir, exist_ok=True)
    if 'coco' in formats:
        os.makedirs(coco_dir, exist_ok=True)
    stamp = osp.join(out_dir, STAMP_FILE)
    if osp.exists(stamp):
        os.remove(stamp)

    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES)]
    counts = dict(train=num_train, val=num_val)
    summary = dict(
        out_dir=out_dir,
        img_dir=img_dir,
        num_images=dict(counts),
        num_objects={},
        params=params)
    encode = [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY]
    names = set()
    next_id, ann_id = 1, 1
    for split_idx, split in enumerate(_SPLITS):
        images, annotations, ids = [], [], []
        n_obj = 0
        for i in range(counts[split]):
            img_id = next_id
            next_id += 1
            stem = f'{img_id:06d}'
            file_name = stem + '.jpg'
            rng = np.random.default_rng([int(seed), split_idx, i])
            img, objects = render_sample(rng, img_size)
            ok, buf = cv2.imencode('.jpg', img, encode)
            if not ok:  # pragma: no cover
                raise RuntimeError(f'cv2 failed to encode {file_name}')
            _write_bytes(osp.join(img_dir, file_name), buf.tobytes())
            names.add(stem)
            ids.append(stem)
            n_obj += len(objects)
            if 'voc' in formats:
                _write_bytes(
                    osp.join(xml_dir, stem + '.xml'),
                    _voc_xml(file_name, img_size, objects))
            images.append(
                dict(id=img_id, file_name=file_name, width=img_size,
                     height=img_size))
            for obj in objects:
                annotations.append(_coco_annotation(ann_id, img_id, obj))
                ann_id += 1
        summary['num_objects'][split] = n_obj
        if 'coco' in formats:
            path = osp.join(coco_dir, f'instances_{split}.json')
            _write_json(
                path,
                dict(images=images, annotations=annotations,
                     categories=categories))
            summary.setdefault('coco', {})[split] = path
        if 'voc' in formats:
            path = osp.join(set_dir, f'{_VOC_SETS[split]}.txt')
            _write_bytes(path, ''.join(s + '\n' for s in ids).encode())
            voc = summary.setdefault(
                'voc', dict(data_root=osp.join(out_dir, 'VOCdevkit')))
            voc[split] = path

    # files of an earlier generation that would not describe these images
    _remove_stale(img_dir, '.jpg', {s + '.jpg' for s in names})
    if osp.isdir(xml_dir):
        keep = names if 'voc' in formats else set()
        _remove_stale(xml_dir, '.xml', {s + '.xml' for s in keep})
    stale = []
    if 'voc' not in formats:
        stale += [osp.join(set_dir, f'{s}.txt') for s in _VOC_SETS.values()]
    if 'coco' not in formats:
        stale += [osp.join(coco_dir, f'instances_{s}.json') for s in _SPLITS]
    for path in stale:
        if osp.isfile(path):
            os.remove(path)
    _write_json(stamp, params)
    return summary


# --------------------------------------------------------------------------
# reader-side checks
# --------------------------------------------------------------------------
def _fail(ann_file: str, where: str, what: str) -> None:
    raise ValueError(f'{ann_file}: {where}: {what}; the annotation file is '
                     f'corrupt, {_REGEN_HINT}')


def validate_coco_annotations(ann_file: str) -> dict:
    """Check a COCO detection annotation file.

    Checks that images have ids, file names and positive sizes, and that every
    annotation refers to an existing image and a known category and has a
    ``bbox = [x, y, w, h]`` with ``w > 0``, ``h > 0`` lying inside its image.

    Args:
        ann_file (str): Path to the COCO json.

    Returns:
        dict: ``dict(num_images=..., num_annotations=...,
        num_categories=...)``.

    Raises:
        ValueError: On the first problem, with a one-line message naming the
            file, the offending image/annotation id, what is wrong and how to
            fix it.
    """
    try:
        with open(ann_file) as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f'{ann_file}: cannot read ({e.strerror}); '
                         f'{_REGEN_HINT}') from None
    except ValueError as e:
        raise ValueError(f'{ann_file}: not valid JSON ({e}); '
                         f'{_REGEN_HINT}') from None
    if not isinstance(data, dict):
        _fail(ann_file, 'top level', 'expected a JSON object')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            _fail(ann_file, 'top level', f'missing list {key!r}')

    cat_ids = set()
    for cat in data['categories']:
        if not isinstance(cat, dict) or not isinstance(cat.get('id'), int) \
                or not cat.get('name'):
            _fail(ann_file, f'category {cat!r}', 'needs an int id and a name')
        cat_ids.add(cat['id'])
    sizes: Dict[int, Tuple[float, float]] = {}
    for img in data['images']:
        img_id = img.get('id') if isinstance(img, dict) else None
        where = f'image id={img_id}'
        if not isinstance(img_id, int):
            _fail(ann_file, f'image {img!r}', 'missing integer id')
        if img_id in sizes:
            _fail(ann_file, where, 'duplicate image id')
        if not img.get('file_name'):
            _fail(ann_file, where, 'missing file_name')
        w, h = img.get('width'), img.get('height')
        if not (isinstance(w, (int, float)) and isinstance(h, (int, float))
                and w > 0 and h > 0):
            _fail(ann_file, where, f'width/height must be > 0, got {w}/{h}')
        sizes[img_id] = (w, h)

    ann_ids = set()
    for ann in data['annotations']:
        ann_id = ann.get('id') if isinstance(ann, dict) else None
        where = f'annotation id={ann_id}'
        if ann_id is None:
            _fail(ann_file, f'annotation {ann!r}', 'missing id')
        if ann_id in ann_ids:
            _fail(ann_file, where, 'duplicate annotation id')
        ann_ids.add(ann_id)
        img_id = ann.get('image_id')
        if img_id not in sizes:
            _fail(ann_file, where, f'image_id {img_id} is not in images')
        where += f' (image_id={img_id})'
        if ann.get('category_id') not in cat_ids:
            _fail(ann_file, where, f'unknown category_id '
                  f'{ann.get("category_id")} (known: {sorted(cat_ids)})')
        bbox = ann.get('bbox')
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(
                isinstance(v, (int, float)) and np.isfinite(v)
                for v in bbox)):
            _fail(ann_file, where, f'bbox must be 4 finite numbers '
                  f'[x, y, w, h], got {bbox!r}')
        x, y, bw, bh = bbox
        if bw <= 0 or bh <= 0:
            _fail(ann_file, where,
                  f'bbox {bbox} has non-positive width/height {bw}/{bh}')
        iw, ih = sizes[img_id]
        if x < 0 or y < 0 or x + bw > iw or y + bh > ih:
            _fail(ann_file, where, f'bbox {bbox} ([x, y, w, h]) is outside '
                  f'the {iw}x{ih} image')
        area = ann.get('area')
        if not isinstance(area, (int, float)) or area <= 0:
            _fail(ann_file, where, f'area must be > 0, got {area!r}')
    return dict(
        num_images=len(sizes),
        num_annotations=len(ann_ids),
        num_categories=len(cat_ids))


def coco_statistics(ann_file: str) -> dict:
    """Per-class object counts and COCO size buckets of a COCO json.

    Size buckets use COCO's ``area`` thresholds ``32 ** 2`` and ``96 ** 2``
    (on the annotation's ``area``, as COCOeval does).

    Returns:
        dict: ``dict(num_images, num_objects, per_class={name: count},
        sizes={'small', 'medium', 'large'}, box_side=dict(min, median, max))``
        where ``box_side`` is ``sqrt(w * h)`` of the boxes in pixels.
    """
    with open(ann_file) as f:
        data = json.load(f)
    id2name = {c['id']: c['name'] for c in data['categories']}
    per_class = {name: 0 for name in id2name.values()}
    sizes = dict(small=0, medium=0, large=0)
    sides = []
    for ann in data['annotations']:
        per_class[id2name[ann['category_id']]] += 1
        area = ann['area']
        key = 'small' if area < 32**2 else 'medium' if area < 96**2 else \
            'large'
        sizes[key] += 1
        sides.append(np.sqrt(ann['bbox'][2] * ann['bbox'][3]))
    sides = np.asarray(sides, np.float64)
    box_side = dict(
        min=float(sides.min()) if sides.size else 0.0,
        median=float(np.median(sides)) if sides.size else 0.0,
        max=float(sides.max()) if sides.size else 0.0)
    return dict(
        num_images=len(data['images']),
        num_objects=len(data['annotations']),
        per_class=per_class,
        sizes=sizes,
        box_side=box_side)
