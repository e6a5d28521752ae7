"""The opt-in low-precision teacher (``teacher_dtype='bf16'`` / ``'fp16'``).

The teacher only runs forward, so it can run in reduced precision at no cost to what the
student learns from but rounding. :class:`TeacherPrecision` does three things:

* casts the teacher's floating parameters and buffers to the dtype **once** (after its
  checkpoint is loaded and every fp32 use of its weights — LSH's ``sigma``, FCFD's
  ``inherit`` — is done);
* casts the floating inputs of every teacher module that owns weights (convolutions,
  linear layers, norms) to that dtype, so whatever calls into the teacher — its
  ``extract_feat``, its heads on the student's RoIs, FCFD's student→teacher paths with
  gradients, ``predict`` for the teacher evaluation — feeds it matching tensors;
* hands every teacher output back to the losses in fp32 (:meth:`to_fp32`).

mmcv's NMS and RoIAlign have no bf16 kernels (on CPU none for half either), so while a
low-precision teacher is in use they compute in fp32 and return their input's dtype
(:func:`mmkd.optim.cpu_autocast_optim_wrapper.fp32_mmcv_ops`).
"""
import dataclasses
from contextlib import nullcontext
from typing import Any, Optional

import torch
import torch.nn as nn

#: ``teacher_dtype`` values → the dtype the teacher runs in (``None``: as built, fp32)
TEACHER_DTYPES = {None: None, 'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def _cast_floating(obj: Any, dtype: torch.dtype) -> Any:
    """``obj`` with every floating tensor in it (nested tuples, lists, dicts, dataclasses,
    mmengine data elements) cast to ``dtype``; anything else unchanged."""
    if torch.is_tensor(obj):
        return obj.to(dtype) if obj.is_floating_point() and obj.dtype != dtype else obj
    if isinstance(obj, tuple) and hasattr(obj, '_fields'):  # namedtuple
        return type(obj)(*(_cast_floating(o, dtype) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_cast_floating(o, dtype) for o in obj)
    if isinstance(obj, dict):
        return {k: _cast_floating(v, dtype) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{
            f.name: _cast_floating(getattr(obj, f.name), dtype)
            for f in dataclasses.fields(obj)})
    if hasattr(obj, 'all_items') and hasattr(obj, 'set_field'):  # BaseDataElement
        for key, value in list(obj.all_items()):
            if torch.is_tensor(value) or hasattr(value, 'all_items'):
                setattr(obj, key, _cast_floating(value, dtype))
        return obj
    return obj


class TeacherPrecision:
    """Runs a frozen teacher in ``dtype`` (see the module docstring).

    Args:
        teacher_dtype (str, optional): ``None`` / ``'fp32'`` (the teacher as built),
            ``'bf16'`` or ``'fp16'`` (fp16 for GPUs: CPUs have few fp16 kernels).
    """

    def __init__(self, teacher_dtype: Optional[str] = None) -> None:
        if teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(
                f"teacher_dtype must be one of {[k for k in TEACHER_DTYPES if k]} or None, got "
                f'{teacher_dtype!r}.')
        self.name = teacher_dtype
        self.dtype: Optional[torch.dtype] = TEACHER_DTYPES[teacher_dtype]
        self._applied_to: Optional[nn.Module] = None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def apply(self, teacher: nn.Module) -> None:
        """Cast ``teacher``'s weights once and make its modules cast their inputs.
        Idempotent (a second call on the same teacher does nothing)."""
        if not self.enabled or self._applied_to is teacher:
            return
        teacher.to(self.dtype)
        dtype = self.dtype

        def cast_inputs(module: nn.Module, args: tuple, kwargs: dict):
            return _cast_floating(args, dtype), _cast_floating(kwargs, dtype)

        for module in teacher.modules():
            owns_tensors = any(True for _ in module.parameters(recurse=False)) or \
                any(True for _ in module.buffers(recurse=False))
            if owns_tensors:
                module.register_forward_pre_hook(cast_inputs, with_kwargs=True)
        self._applied_to = teacher

    def to_fp32(self, value: Any) -> Any:
        """A teacher output as the losses see it: floating tensors in fp32; a callable
        (a teacher head handed to a loss, e.g. ``teacher.roi_forward``) returns fp32."""
        if not self.enabled:
            return value
        if callable(value) and not torch.is_tensor(value):
            return _Fp32Outputs(value)
        return _cast_floating(value, torch.float32)

    def mmcv_ops_context(self):
        """While active, mmcv's NMS / RoIAlign run in fp32 (no-op for an fp32 teacher)."""
        if not self.enabled:
            return nullcontext()
        from mmkd.optim.cpu_autocast_optim_wrapper import fp32_mmcv_ops
        return fp32_mmcv_ops()

    def __repr__(self) -> str:
        return f'TeacherPrecision({self.name!r})'


class _Fp32Outputs:
    """Wraps a teacher callable so that its outputs come back in fp32."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return _cast_floating(self.fn(*args, **kwargs), torch.float32)

    def __getattr__(self, name: str):
        return getattr(self.fn, name)


__all__ = ['TeacherPrecision', 'TEACHER_DTYPES']
