"""Make torchvision importable when its compiled ops cannot load.

The torchvision wheels on PyPI link against the CUDA build of torch (``libc10_cuda.so``);
next to a CPU-only torch their ``_C`` extension fails to load. torchvision then runs
without its ops (``torchvision.extension._has_ops() is False``), except that its
``_meta_registrations`` registers fake kernels for ``torchvision::nms`` / ``qnms``
unconditionally, which fails at import when those operators were never defined — and
mmpretrain imports torchvision (transforms, metrics) at import time.

:func:`ensure_torchvision_importable` defines just those two operator *schemas* in that
case. No kernel is added: torchvision's compiled ops stay unavailable (calling
``torchvision.ops.nms`` raises torchvision's own "ops not available" error), and nothing
in mmpretrain's classifiers, datasets or metrics that mmkd uses calls them. With a
working torchvision (any CUDA cluster) this function does nothing.
"""
import glob
import importlib.util
import os.path as osp
import sys

import torch

_SCHEMAS = ('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
            'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
_fragment = None


def ensure_torchvision_importable() -> bool:
    """Returns True if the operator schemas had to be defined."""
    global _fragment
    if 'torchvision' in sys.modules or _fragment is not None:
        return False
    spec = importlib.util.find_spec('torchvision')
    if spec is None or spec.origin is None:
        return False
    libs = glob.glob(osp.join(osp.dirname(spec.origin), '_C*.so'))
    if libs:
        try:
            torch.ops.load_library(libs[0])
            return False  # the compiled ops load: torchvision is fine as it is
        except (OSError, RuntimeError):
            pass
    if hasattr(torch.ops.torchvision, 'nms'):
        return False
    _fragment = torch.library.Library('torchvision', 'DEF')
    for schema in _SCHEMAS:
        _fragment.define(schema)
    return True
