"""Where mmkd's components are registered.

Losses, connectors and hooks go into MMEngine's *root* registries. Both mmdet's and
mmpretrain's registries are children of those roots and fall back to their parent when a
name is not found locally, so one registration serves detection configs
(``default_scope='mmdet'``) and classification configs (``default_scope='mmpretrain'``) alike.

The distillers themselves are registered in the task library's own registry
(``DetectionDistiller`` in mmdet's ``MODELS``), because that is where a detection config's
``model=dict(type=...)`` is looked up first.
"""
from mmengine.registry import HOOKS, MODELS

__all__ = ['MODELS', 'HOOKS']
