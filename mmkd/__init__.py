"""mmkd: feature distillation for MMDetection / MMEngine.

Importing this package registers its models, losses, connectors and hooks, so a config
only needs ``custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)``.
"""
from .version import __version__
from .utils.torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # before anything imports mmpretrain (see its docstring)

from . import datasets, hooks, models, optim, utils  # noqa: F401,E402
from .utils.package_scope import register_config_scope  # noqa: E402

register_config_scope()  # `mmkd::path` in `_base_` lists (MMEngine's package scopes)

__all__ = ['__version__']
