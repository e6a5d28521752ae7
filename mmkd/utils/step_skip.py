"""Leave out of an optimizer step the parameters that the step did not use.

A module whose forward uses only some of its parameters each step (FCFD's bridges of
mixed paths not sampled) must still give every parameter a gradient, or DDP without
``find_unused_parameters`` fails; it does so with a zero-contribution term. A zero
gradient is not "no gradient", though: SGD with momentum and weight decay still moves
such a parameter. Just before each optimizer step (after the backward pass, and after
DDP has all-reduced the gradients) this module's hook sets the ``.grad`` of the
parameters each registered owner reports unused to ``None``, which every
``torch.optim`` optimizer skips: no weight decay, no momentum update, no Adam moments.

The hook is global (``torch.optim.optimizer.register_optimizer_step_pre_hook``: it
runs for any optimizer, wherever the training loop calls ``step``, MMEngine's
``OptimWrapper`` / ``AmpOptimWrapper`` included, so no hook or wrapper is needed in the
config) and acts only on parameters the stepping optimizer holds. With DDP, every
rank must report the same parameters (the owner's business: e.g. the same random path
on every rank), otherwise the ranks' weights drift apart.
"""
import weakref
from typing import Set

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

_OWNERS: 'weakref.WeakSet' = weakref.WeakSet()
_HANDLE = None


class StepSkipOwner:
    """What an owner implements (duck-typed; listed here for the documentation)."""

    #: True when a forward pass ran since the owner's last optimizer step
    step_pending: bool = False

    def before_optimizer_step(self, held: Set[int]) -> None:
        """``held``: ``id`` s of the parameters of the optimizer about to step. If it holds
        the owner's parameters, set ``.grad = None`` on those this step did not use and
        start a new step (``step_pending = False``); otherwise do nothing."""
        raise NotImplementedError


def register_step_skip(owner) -> None:
    """Make the global pre-step hook call ``owner`` (kept by weak reference)."""
    global _HANDLE
    _OWNERS.add(owner)
    if _HANDLE is None:
        _HANDLE = register_optimizer_step_pre_hook(_skip_unused)


def _skip_unused(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    pending = [owner for owner in list(_OWNERS) if owner.step_pending]
    if not pending:
        return
    held = {id(p) for group in optimizer.param_groups for p in group['params']}
    for owner in pending:
        owner.before_optimizer_step(held)


__all__ = ['register_step_skip', 'StepSkipOwner']
