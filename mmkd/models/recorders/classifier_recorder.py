"""The penultimate feature and the logits of an image classifier."""
from contextlib import contextmanager
from typing import Iterator, List, Tuple

import torch.nn as nn
from torch import Tensor

from .module_recorder import get_submodule


class ClassifierRecorder:
    """Records the input and the output of a classifier's final linear layer.

    For mmpretrain's ``ImageClassifier`` with a ``LinearClsHead`` the layer is
    ``head.fc``: its input is the penultimate feature (the neck output after the head's
    ``pre_logits``, e.g. the globally pooled last stage, ``[N, D]``), its output the
    logits ``[N, num_classes]``. One forward hook, registered once, stores both only
    while :meth:`recording` is on, so the model runs unchanged otherwise.

    Args:
        classifier (nn.Module): the student or the teacher.
        fc_path (str): dotted path of the final ``nn.Linear``. Defaults to ``'head.fc'``.
        owner (str): ``'student'`` or ``'teacher'``, for error messages.
    """

    def __init__(self, classifier: nn.Module, fc_path: str = 'head.fc',
                 owner: str = 'model') -> None:
        fc = get_submodule(classifier, fc_path, owner)
        if not isinstance(fc, nn.Linear):
            raise TypeError(
                f'{owner}: {fc_path!r} is a {type(fc).__name__}, not the classifier\'s '
                'final nn.Linear; set head_fc=<path of that layer> in the distiller '
                "config (mmpretrain's LinearClsHead: 'head.fc').")
        self.owner = owner
        self.fc_path = fc_path
        self.num_classes = fc.out_features
        self.in_features = fc.in_features
        self._calls: List[Tuple[Tensor, Tensor]] = []
        self._active = False
        self._handle = fc.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if self._active:
            self._calls.append((inputs[0], output))

    @contextmanager
    def recording(self) -> Iterator['ClassifierRecorder']:
        """Clear the previous record and record until exit."""
        self._calls.clear()
        self._active = True
        try:
            yield self
        finally:
            self._active = False

    def _last(self) -> Tuple[Tensor, Tensor]:
        if len(self._calls) != 1:
            what = 'did not run' if not self._calls else f'ran {len(self._calls)} times'
            raise RuntimeError(
                f'{self.owner} {self.fc_path!r} {what} in this forward pass; the logits / '
                'embedding sources need exactly one classifier call per step.')
        return self._calls[0]

    @property
    def embedding(self) -> Tensor:
        """``[N, D]`` the classifier's input (penultimate feature)."""
        return self._last()[0]

    @property
    def logits(self) -> Tensor:
        """``[N, num_classes]`` the classifier's output."""
        return self._last()[1]

    def remove(self) -> None:
        self._handle.remove()


__all__ = ['ClassifierRecorder']
