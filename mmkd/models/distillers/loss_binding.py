"""One distillation loss wired to its inputs: sources, levels, connectors, schedule."""
import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from mmkd.registry import MODELS
from .loss_schedule import LossSchedule


def _forward_arguments(loss: nn.Module):
    """(all argument names, required names, accepts **kwargs) of ``loss.forward``."""
    params = list(inspect.signature(loss.forward).parameters.values())
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = [p.name for p in params if p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in params)
    return names, required, has_kwargs


class LossBinding(nn.Module):
    """A distillation loss and the wiring that feeds it.

    Config (one entry of the distiller's ``distill_losses`` dict)::

        fpn_l2=dict(
            loss=dict(type='FeatureMSELoss', loss_weight=1.0),   # the math
            inputs=dict(student_feat='student.neck',              # forward arg -> source
                        teacher_feat='teacher.neck'),
            levels=(0, 1, 2, 3),          # optional: per-level call on tuple sources
            level_weights=None,           # optional: weight of each level (default 1)
            connectors=dict(student_feat=dict(type='ConvConnector', in_channels=64,
                                              out_channels=256)),
            schedule=dict(warmup_iters=100, stop_epoch=None))

    Sources are strings the distiller resolves (``'student.<module path>'``,
    ``'teacher.roi.embedding'``, ``'data_samples'``, ...). The wiring is checked against
    the loss's ``forward`` signature when the distiller is built.

    With ``levels``, every tuple-valued input is indexed by the level, the loss runs
    once per level and the results are summed with ``level_weights``; other inputs
    (labels, masks, data samples) are passed unchanged to each call. Connectors then
    exist once per level (FPN levels do not share adapters).

    A loss's ``forward`` returns a scalar tensor, or a dict of named scalar terms
    (e.g. ``dict(app=..., kl_s=...)``) whose **sum** is the loss. The binding returns the
    sum; with ``return_parts=True`` it also returns the terms (detached, times the
    schedule factor and level weights, so they add up to the total) for logging: the
    distiller logs them as ``distill.loss_<name>.<term>`` and keeps them out of the
    total loss (see :meth:`BaseDistiller.parse_losses`).
    """

    def __init__(self,
                 name: str,
                 loss: dict,
                 inputs: Dict[str, str],
                 levels: Optional[Sequence[int]] = None,
                 level_weights: Optional[Sequence[float]] = None,
                 connectors: Optional[Dict[str, dict]] = None,
                 schedule: Optional[dict] = None) -> None:
        super().__init__()
        self.name = name
        if not isinstance(loss, dict) or 'type' not in loss:
            raise ValueError(f"distill loss {name!r}: 'loss' must be a config dict with a "
                             f"'type', got {loss!r}")
        self.loss = MODELS.build(loss)
        self.inputs = dict(inputs)
        self._check_wiring(type(self.loss).__name__)
        self.levels: Optional[List[int]] = list(levels) if levels is not None else None
        if level_weights is not None:
            if self.levels is None or len(level_weights) != len(self.levels):
                raise ValueError(
                    f'distill loss {name!r}: level_weights needs one weight per entry of '
                    f'levels (levels={levels}, level_weights={level_weights})')
        self.level_weights = list(level_weights) if level_weights is not None else None
        connectors = dict(connectors or {})
        for arg in connectors:
            if arg not in self.inputs:
                raise ValueError(
                    f'distill loss {name!r}: connector for {arg!r}, which is not one of its '
                    f'inputs {sorted(self.inputs)}')
        num_copies = len(self.levels) if self.levels is not None else 1
        self.connectors = nn.ModuleDict({
            arg: nn.ModuleList([MODELS.build(cfg) for _ in range(num_copies)])
            for arg, cfg in connectors.items()
        })
        self.schedule = LossSchedule(**(schedule or {}))

    def _check_wiring(self, loss_type: str) -> None:
        names, required, has_kwargs = _forward_arguments(self.loss)
        signature = f'{loss_type}.forward({", ".join(names)})'
        missing = [arg for arg in required if arg not in self.inputs]
        if missing:
            raise ValueError(
                f'distill loss {self.name!r}: argument(s) {missing} of {signature} are not '
                f"wired; add them to inputs, e.g. inputs=dict({missing[0]}='student.neck').")
        unknown = [arg for arg in self.inputs if arg not in names]
        if unknown and not has_kwargs:
            raise ValueError(f'distill loss {self.name!r}: inputs {unknown} are not '
                             f'arguments of {signature}.')
        for arg, source in self.inputs.items():
            if not isinstance(source, str) or not source:
                raise ValueError(f'distill loss {self.name!r}: source of {arg!r} must be a '
                                 f'non-empty string, got {source!r}')

    @property
    def sources(self) -> List[str]:
        return list(self.inputs.values())

    def _connect(self, arg: str, value: Any, copy: int) -> Any:
        if arg in self.connectors:
            return self.connectors[arg][copy](value)
        return value

    def _call(self, values: Dict[str, Any]) -> Union[Tensor, Dict[str, Tensor]]:
        try:
            result = self.loss(**values)
        except ValueError as err:
            raise ValueError(f'distill loss {self.name!r}: {err}') from err
        if isinstance(result, dict):
            if not result or not all(isinstance(k, str) and k and '.' not in k and
                                     isinstance(v, Tensor) for k, v in result.items()):
                raise TypeError(
                    f'distill loss {self.name!r}: {type(self.loss).__name__}.forward '
                    'returned a dict; it must map non-empty names without "." to scalar '
                    f'tensors, got {result!r}')
        return result

    @staticmethod
    def _add(total: Any, parts: Dict[str, Tensor], result: Union[Tensor, Dict[str, Tensor]],
             weight: float) -> Any:
        """Add ``weight ·`` one loss call's result to the running total (and terms)."""
        if not isinstance(result, dict):
            return total + (result if weight == 1.0 else weight * result)
        for key, value in result.items():
            value = value if weight == 1.0 else weight * value
            parts[key] = parts[key] + value if key in parts else value
            total = total + value
        return total

    def forward(self,
                fetch: Callable[[str], Any],
                factor: float = 1.0,
                return_parts: bool = False
                ) -> Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]:
        """Compute ``factor ·`` the loss, fetching each input by its source.

        Returns:
            Tensor, or ``(Tensor, dict)`` with ``return_parts=True``: the loss and its
            named terms (detached; empty unless the loss returns a dict).
        """
        if factor == 0.0:
            zero = self._zero_with_graph()
            return (zero, {}) if return_parts else zero
        values = {arg: fetch(source) for arg, source in self.inputs.items()}
        parts: Dict[str, Tensor] = {}
        if self.levels is None:
            total = self._add(
                0., parts,
                self._call({arg: self._connect(arg, v, 0) for arg, v in values.items()}),
                1.0)
        else:
            total = 0.
            for i, level in enumerate(self.levels):
                per_level = {}
                for arg, value in values.items():
                    if isinstance(value, (tuple, list)):
                        if level >= len(value):
                            raise ValueError(
                                f'distill loss {self.name!r}: level {level} requested but '
                                f'{self.inputs[arg]!r} has {len(value)} levels')
                        value = value[level]
                    per_level[arg] = self._connect(arg, value, i)
                weight = 1.0 if self.level_weights is None else self.level_weights[i]
                total = self._add(total, parts, self._call(per_level), weight)
        if factor != 1.0:
            total = total * factor
        if not return_parts:
            return total
        return total, {key: (value * factor if factor != 1.0 else value).detach()
                       for key, value in parts.items()}

    def _zero_with_graph(self) -> Tensor:
        """A zero loss that still touches every trainable parameter of this binding, so
        that DDP finds a gradient for each of them without ``find_unused_parameters``."""
        params = [p for p in self.parameters() if p.requires_grad]
        if params:
            return sum(p.sum() for p in params) * 0.
        return torch.zeros(())
