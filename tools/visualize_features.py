"""Draw the teacher's and the student's feature maps side by side for one image.

    python tools/visualize_features.py CONFIG CKPT IMAGE --out DIR
        [--compare STUDENT_ALONE_CKPT] [--sources neck [backbone ...]] [--levels 0 1 2]
        [--teacher-ckpt PATH] [--dpi 110] [--cfg-options k=v ...]

CONFIG is a distillation config (``DetectionDistiller``), CKPT its trained checkpoint
(the distilled student; the teacher's weights come from the config's ``teacher_ckpt``
or ``--teacher-ckpt``). ``--compare`` adds the same student architecture trained alone
(a plain detector checkpoint, or a distiller checkpoint whose student is used).

For every source (a module path of the detectors, default ``neck``: each FPN level) a
PNG ``DIR/feature_maps_<source>.png`` has one row per output (level) and, per network,
the channel mean ``mean_c F_c`` and the AMD-style attention map ``sum_c F_c^2``, each
min-max scaled on its own, cropped to the image (batch padding removed). A student
panel's title gives the Pearson correlation of its map with the teacher's (1: same
spatial pattern; n/a for a constant map). ``DIR/feature_maps.json`` holds those
correlations.
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from torch import Tensor  # noqa: E402

import mmkd  # noqa: E402,F401  (registers mmkd's models)
from mmkd.models.recorders.module_recorder import ModuleOutputRecorder  # noqa: E402
from mmkd.utils.cli import allow_mmengine_checkpoints  # noqa: E402

SIDE_PREFIXES = ('student.', 'teacher.')
KINDS = ('mean', 'attention')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='distillation config (DetectionDistiller)')
    parser.add_argument('checkpoint', help='distiller checkpoint (the distilled student)')
    parser.add_argument('image', help='image file to run both networks on')
    parser.add_argument('--out', required=True, help='folder for the PNGs and the JSON')
    parser.add_argument('--compare', help='checkpoint of the student trained alone')
    parser.add_argument('--sources', nargs='+', default=['neck'],
                        help='module paths to draw, in both networks (default: neck)')
    parser.add_argument('--levels', nargs='+', type=int, default=None,
                        help='indices of a tuple-valued source to draw (default: all)')
    parser.add_argument('--teacher-ckpt', help="the teacher's weights (default: the "
                        "config's model.teacher_ckpt)")
    parser.add_argument('--dpi', type=int, default=110, help='resolution of the PNGs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    return parser.parse_args(argv)


# ------------------------------------------------------------------------ models
def build_networks(cfg: Config, checkpoint: str, teacher_ckpt: Optional[str],
                   compare: Optional[str]):
    """The distiller (distilled student + loaded teacher) and, with ``compare``, a
    second student with the weights trained alone; all in eval mode."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from mmdet.registry import MODELS
    from mmkd.models.distillers.teacher import resolve_model_config

    if cfg.model.get('type') != 'DetectionDistiller':
        raise SystemExit(f'visualize_features: {cfg.filename} is not a distillation config '
                         f"(model.type is {cfg.model.get('type')!r}, not 'DetectionDistiller')")
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if teacher_ckpt is not None:
        cfg.model.teacher_ckpt = teacher_ckpt
    distiller = MODELS.build(cfg.model)
    distiller.load_teacher()
    load_checkpoint(distiller, checkpoint, map_location='cpu', strict=False,
                    revise_keys=[(r'^module\.', '')], logger='silent')
    distiller.eval()
    alone = None
    if compare is not None:
        alone = MODELS.build(resolve_model_config(cfg.model.student, 'student'))
        load_checkpoint(alone, compare, map_location='cpu', strict=True, logger='silent',
                        revise_keys=[(r'^module\.', ''), (r'^student\.', '')])
        alone.eval()
    return distiller, alone


def load_image(cfg: Config, image: str, distiller) -> Tuple[Tensor, list]:
    """``image`` through the config's test pipeline (annotations dropped) and the
    student's data preprocessor: ``inputs [1, 3, H, W]`` and the data samples."""
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate

    from mmdet.utils import get_test_pipeline_cfg

    if not osp.isfile(image):
        raise SystemExit(f'visualize_features: image {image!r} not found')
    pipeline = [t for t in get_test_pipeline_cfg(cfg)
                if 'LoadAnnotations' not in t['type']]
    data = Compose(pipeline)(dict(img_path=image, img_id=0))
    batch = distiller.data_preprocessor(pseudo_collate([data]), False)
    return batch['inputs'], batch['data_samples']


def module_path(source: str) -> str:
    for prefix in SIDE_PREFIXES:
        if source.startswith(prefix):
            return source[len(prefix):]
    return source


@torch.no_grad()
def record(detector, inputs: Tensor, data_samples: list, paths: List[str],
           owner: str) -> Dict[str, Tuple[Tensor, ...]]:
    """Run ``detector`` (its full test-time forward) and return each module's output as
    a tuple of ``[C, H, W]`` maps (one per level / call)."""
    recorder = ModuleOutputRecorder(detector, paths, owner)
    try:
        with recorder.recording():
            detector._forward(inputs, data_samples)
        out = {}
        for path in paths:
            value = recorder.get(path)
            maps = value if isinstance(value, (tuple, list)) else (value,)
            flat = []
            for m in maps:
                flat.extend(m if isinstance(m, (tuple, list)) else [m])
            if not all(torch.is_tensor(m) and m.dim() == 4 for m in flat):
                raise SystemExit(f'visualize_features: {owner} module {path!r} does not '
                                 'give [N, C, H, W] feature maps; choose a source such as '
                                 'neck, backbone or a conv layer')
            out[path] = tuple(m[0].float() for m in flat)
        return out
    finally:
        recorder.remove()


# ------------------------------------------------------------------------ maps
def channel_maps(feat: Tensor) -> Dict[str, Tensor]:
    """``feat [C, H, W]`` -> ``{'mean': mean_c F_c, 'attention': sum_c F_c^2}``, [H, W]."""
    return dict(mean=feat.mean(0), attention=feat.pow(2).sum(0))


def crop_to_image(feat: Tensor, data_sample) -> Tensor:
    """Drop the rows/columns of ``feat [C, h, w]`` that only cover batch padding."""
    img_h, img_w = data_sample.metainfo['img_shape'][:2]
    pad_h, pad_w = data_sample.metainfo.get('batch_input_shape',
                                            data_sample.metainfo.get('pad_shape'))[:2]
    h = max(1, math.ceil(feat.shape[1] * img_h / pad_h))
    w = max(1, math.ceil(feat.shape[2] * img_w / pad_w))
    return feat[:, :h, :w]


def correlation(a: Tensor, b: Tensor) -> Optional[float]:
    """Pearson correlation of two maps of one shape (``None`` when one of them is
    constant, e.g. a 1x1 level)."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return float((a @ b) / denom) if denom > 0 else None


def level_name(source: str, index: int, count: int, feat: Tensor, input_h: int) -> str:
    stride = input_h / feat.shape[-2]
    if module_path(source) == 'neck' and stride >= 1:
        return f'P{round(math.log2(stride))}'
    return f'{source}[{index}]' if count > 1 else source


# ------------------------------------------------------------------------ drawing
def draw(path: str, image_rgb, rows: List[dict], networks: List[str], title: str,
         dpi: int = 110) -> None:
    """One PNG: a row per level, columns image | each network's mean | each network's
    attention."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    cols = 1 + len(KINDS) * len(networks)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.1 * cols, 2.3 * len(rows) + 0.8),
                             squeeze=False)
    for r, row in enumerate(rows):
        ax = axes[r][0]
        ax.imshow(image_rgb)
        ax.set_ylabel(f"{row['name']}\n{row['size']}", fontsize=10)
        if r == 0:
            ax.set_title('image', fontsize=9)
        c = 1
        for kind in KINDS:
            for net in networks:
                m = row['maps'][net][kind]
                lo, hi = float(m.min()), float(m.max())
                shown = (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)
                ax = axes[r][c]
                ax.imshow(shown.numpy(), cmap='viridis' if kind == 'mean' else 'inferno',
                          vmin=0, vmax=1, interpolation='nearest')
                if r == 0:
                    what = 'channel mean' if kind == 'mean' else 'attention Σc F²'
                    ax.set_title(f'{net}\n{what}', fontsize=9)
                if net != 'teacher':
                    corr = row['corr'][net][kind]
                    ax.set_xlabel('corr n/a' if corr is None else f'corr {corr:+.2f}',
                                  fontsize=9)
                c += 1
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


@torch.no_grad()  # not torch.set_grad_enabled(False): that would outlive the call
def visualize(args: argparse.Namespace) -> Dict[str, str]:
    """Write the PNGs and the JSON; returns ``{source: png path}``."""
    import mmcv

    allow_mmengine_checkpoints()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    distiller, alone = build_networks(cfg, args.checkpoint, args.teacher_ckpt, args.compare)
    inputs, data_samples = load_image(cfg, args.image, distiller)
    paths = [module_path(s) for s in args.sources]
    nets = {'teacher': record(distiller.teacher, distiller.teacher_input(inputs),
                              data_samples, paths, 'teacher'),
            'student (distilled)': record(distiller.student, inputs, data_samples, paths,
                                          'student')}
    if alone is not None:
        nets['student alone'] = record(alone, inputs, data_samples, paths, 'student alone')
    networks = list(nets)
    image_rgb = mmcv.imread(args.image, channel_order='rgb')
    os.makedirs(args.out, exist_ok=True)
    written, report = {}, {}
    for source, path in zip(args.sources, paths):
        count = len(nets['teacher'][path])
        levels = range(count) if args.levels is None else args.levels
        bad = [i for i in levels if not -count <= i < count]
        if bad:
            raise SystemExit(f'visualize_features: {source} has {count} outputs; '
                             f'--levels {bad} out of range')
        rows = []
        for i in levels:
            feats = {n: crop_to_image(nets[n][path][i], data_samples[0]) for n in networks}
            shapes = {tuple(f.shape[1:]) for f in feats.values()}
            if len(shapes) != 1:
                raise SystemExit(f'visualize_features: {source}[{i}] has different sizes '
                                 f'in the networks ({shapes}); choose another source')
            maps = {n: channel_maps(f) for n, f in feats.items()}
            corr = {n: {k: correlation(maps[n][k], maps['teacher'][k]) for k in KINDS}
                    for n in networks if n != 'teacher'}
            channels = '/'.join(str(feats[n].shape[0]) for n in networks)
            size = f'{feats["teacher"].shape[1]}x{feats["teacher"].shape[2]}, C {channels}'
            rows.append(dict(name=level_name(source, i, count, nets['teacher'][path][i],
                                             inputs.shape[-2]),
                             size=size, maps=maps, corr=corr))
        png = osp.join(args.out, f'feature_maps_{path.replace(".", "_")}.png')
        draw(png, image_rgb, rows, networks,
             f'{source} of {osp.basename(args.config)} on {osp.basename(args.image)} '
             '(each map min-max scaled; corr: Pearson correlation with the teacher)',
             dpi=args.dpi)
        written[source] = png
        report[source] = {row['name']: row['corr'] for row in rows}
    with open(osp.join(args.out, 'feature_maps.json'), 'w') as f:
        json.dump(report, f, indent=1)
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    for source, png in visualize(parse_args(argv)).items():
        print(f'{source}: {png}')


if __name__ == '__main__':
    main()
