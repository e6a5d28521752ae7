"""Capture the outputs of named submodules with forward hooks."""
import difflib
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence, Tuple, Union

import torch.nn as nn
from torch import Tensor

RecordedValue = Union[Tensor, Tuple]


def get_submodule(model: nn.Module, path: str, owner: str = 'model') -> nn.Module:
    """Return ``model``'s submodule at the dotted ``path``.

    Raises:
        KeyError: naming the path and the closest valid module names, e.g.
            ``student has no module 'nek'; did you mean 'neck', 'neck.fpn_convs'?``
    """
    modules = dict(model.named_modules())
    if path in modules and path != '':
        return modules[path]
    names = [name for name in modules if name]
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.5)
    # Paths that share the valid prefix are often what the user meant.
    prefix = path.rsplit('.', 1)[0]
    close += [n for n in names if n.startswith(prefix + '.') and n not in close][:5]
    hint = f"; did you mean {', '.join(repr(c) for c in close[:8])}?" if close else \
        f'; top-level modules are {sorted({n.split(".")[0] for n in names})}'
    raise KeyError(f'{owner} has no module {path!r}{hint}')


class ModuleOutputRecorder:
    """Records the outputs of submodules of one model while recording is on.

    Hooks are registered once, at construction; they only store anything inside
    :meth:`recording`, so the model runs unchanged at predict time. A module that runs
    several times per forward (a head's tower applied to every FPN level) yields a tuple
    with one output per call, in call order; a module that runs once yields its output.

    Args:
        model (nn.Module): the network to observe (student or teacher).
        paths (Sequence[str]): dotted module paths, e.g. ``'neck'``,
            ``'bbox_head.cls_convs.3'``. Unknown paths raise at construction.
        owner (str): 'student' or 'teacher', used in error messages.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str], owner: str = 'model') -> None:
        self.owner = owner
        self._records: Dict[str, List] = {path: [] for path in paths}
        self._active = False
        self._handles = []
        for path in self._records:
            module = get_submodule(model, path, owner)
            self._handles.append(module.register_forward_hook(self._make_hook(path)))

    def _make_hook(self, path: str):

        def hook(module: nn.Module, inputs, output) -> None:
            if self._active:
                self._records[path].append(output)

        return hook

    @property
    def paths(self) -> List[str]:
        return list(self._records)

    @contextmanager
    def recording(self) -> Iterator['ModuleOutputRecorder']:
        """Clear previous records and record every hooked module until exit."""
        self.clear()
        self._active = True
        try:
            yield self
        finally:
            self._active = False

    def clear(self) -> None:
        """Drop every recorded output (the distiller calls this after each step)."""
        for calls in self._records.values():
            calls.clear()

    def snapshot(self) -> Dict[str, List]:
        """What was recorded so far: path -> the outputs of its calls, in call order."""
        return {path: list(calls) for path, calls in self._records.items()}

    def restore(self, records: Dict[str, List]) -> None:
        """Replace the records with ``records`` (a :meth:`snapshot` of the same paths),
        as if the modules had produced them: the teacher cache hands back a pass it
        answered without running them."""
        if set(records) != set(self._records):
            raise ValueError(f'{self.owner} recorder: restore got paths {sorted(records)}, '
                             f'it records {sorted(self._records)}')
        for path, calls in records.items():
            self._records[path] = list(calls)

    def get(self, path: str) -> RecordedValue:
        """The recorded output of ``path``: one value, or a tuple (one per call)."""
        calls = self._records[path]
        if not calls:
            raise RuntimeError(
                f'{self.owner} module {path!r} did not run in this forward pass; '
                'is it part of the path the model takes during training?')
        return calls[0] if len(calls) == 1 else tuple(calls)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
