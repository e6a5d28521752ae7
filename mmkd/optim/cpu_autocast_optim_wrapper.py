"""Mixed precision where MMEngine's ``AmpOptimWrapper`` does not run: on CPU."""
import importlib
from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward pass runs under ``torch.autocast('cpu', dtype)``.

    MMEngine's ``AmpOptimWrapper`` needs a GPU (it asserts CUDA/NPU/MLU). On CPU, bf16
    autocast needs no loss scaling (bf16 has fp32's exponent range), so a plain optimizer
    step follows. ``tools/train.py --amp`` picks this wrapper when no GPU is present; mmkd's
    LSH and AMD losses compute in fp32 inside autocast regions.

    mmcv's CPU kernels for NMS and RoIAlign only take fp32 (autocast does not know custom
    ops), and a two-stage detector runs both while training, so inside this context their
    inputs are cast to fp32. Only this wrapper's context is affected.

    Args:
        dtype (str | torch.dtype): ``'bfloat16'`` (default) or ``'float16'``.
    """

    def __init__(self, *args, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype), \
                fp32_mmcv_ops():
            yield


@contextmanager
def fp32_mmcv_ops():
    """While active, mmcv's NMS and RoIAlign compute in fp32 (RoIAlign's output goes
    back to its input's dtype: mmdet writes it into a tensor of that dtype). Used by this
    wrapper and by a low-precision teacher (:mod:`mmkd.models.distillers.teacher_precision`).
    Re-entrant: a nested use finds the fp32 versions already in place."""
    from mmcv.ops.nms import NMSop

    # the submodule (``mmcv.ops.roi_align`` as an attribute is the function)
    roi_align_module = importlib.import_module('mmcv.ops.roi_align')
    originals = (NMSop.apply, roi_align_module.roi_align)

    def nms(boxes, scores, *args):
        return originals[0](boxes.float(), scores.float(), *args)

    def roi_align(features, rois, *args):  # computed in fp32, returned in input dtype
        return originals[1](features.float(), rois.float(), *args).to(features.dtype)

    NMSop.apply, roi_align_module.roi_align = nms, roi_align
    try:
        yield
    finally:
        NMSop.apply, roi_align_module.roi_align = originals
