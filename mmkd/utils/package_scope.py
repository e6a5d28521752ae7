"""Where mmkd's configs and tools live once installed, and the ``mmkd::`` config scope.

mmkd ships its ``configs/`` and ``tools/`` inside the package as ``mmkd/.mim/``, as
mmdet does: symbolic links to the repository's folders in a source checkout and an
editable install (``pip install -e .``), real copies in a wheel (see ``setup.py``). So
``mmkd::lsh/lsh_faster-rcnn_r101-r50_fpn_1x_coco.py`` means
``<installed mmkd>/.mim/configs/lsh/lsh_faster-rcnn_r101-r50_fpn_1x_coco.py`` wherever
the process runs, and openmim (``mim train mmkd ...``, ``mim run mmkd export_student``)
finds mmkd's tools.

MMEngine resolves ``pkg::path`` (in ``_base_`` lists and in
``mmengine.hub.get_config``) only for the packages of its ``MODULE2PACKAGE`` table;
importing mmkd adds itself to that table (:func:`register_config_scope`).
"""
import os.path as osp
from typing import Optional, Type

from mmengine.registry import Registry

#: the installed ``mmkd`` package folder
PACKAGE_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: ``mmkd/.mim``: what openmim and MMEngine look for in an OpenMMLab package
MIM_ROOT = osp.join(PACKAGE_ROOT, '.mim')
#: the folder ``mmkd::`` config paths are relative to
MMKD_CONFIG_ROOT = osp.join(MIM_ROOT, 'configs')
#: mmkd's command-line tools (``tools/train.py`` ...), as installed
MMKD_TOOLS_ROOT = osp.join(MIM_ROOT, 'tools')

SCOPE = 'mmkd'
#: what ``MODULE2PACKAGE['mmkd']`` holds. MMEngine hands it to ``get_installed_path``,
#: which asks pkg_resources first and importlib second. For the distribution name
#: ``mmkd`` pkg_resources answers ``site-packages/mmkd`` even for an editable install
#: (whose package lives in the checkout, so ``mmkd::`` would break outside it); a module
#: at the package's top level is no distribution, so the answer comes from
#: ``importlib.util.find_spec``: the folder of the mmkd actually imported, in every
#: kind of install.
LOCATOR_MODULE = 'mmkd.version'


def register_config_scope() -> None:
    """Let MMEngine resolve and build ``mmkd::`` config paths (idempotent).

    MMEngine 0.10 asserts that the part before ``::`` is in
    ``mmengine.config.utils.MODULE2PACKAGE`` (module name -> pip package name), then
    looks the package up with ``mmengine.utils.get_installed_path`` (see
    ``LOCATOR_MODULE``) and reads ``<package>/.mim/configs/<path>``. It also tags every
    top-level ``type=`` dict of such a base with ``_scope_='mmkd'``, so the objects are
    built in the registries of scope ``mmkd``: one child of each MMEngine root registry
    is made here (:class:`HostScopeRegistry`), which looks names up where the config
    runs (its ``default_scope``: mmdet for detection), then in MMEngine's roots (where
    mmkd's losses and hooks are).

    A config that uses ``mmkd::`` in its ``_base_`` therefore needs mmkd imported before
    it is parsed: mmkd's own tools, ``mim train mmkd`` / ``mim test mmkd`` (which run
    them) and any script that ran ``import mmkd`` do; ``custom_imports`` in the same
    file comes too late for its ``_base_``.
    """
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.registry import root

    MODULE2PACKAGE.setdefault(SCOPE, LOCATOR_MODULE)
    for name in dir(root):
        registry = getattr(root, name)
        if isinstance(registry, Registry) and registry.parent is None \
                and SCOPE not in registry.children:
            HostScopeRegistry(registry.name, parent=registry, scope=SCOPE)


def host_scope() -> str:
    """The scope a config is being built in, ignoring ``mmkd`` (MMEngine switches the
    default scope to a ``_scope_`` while it builds that dict): the latest other
    ``DefaultScope``, else ``mmdet``."""
    from mmengine.registry import DefaultScope
    for instance in reversed(list(DefaultScope._instance_dict.values())):
        if instance.scope_name != SCOPE:
            return instance.scope_name
    return 'mmdet'


class HostScopeRegistry(Registry):
    """A registry of scope ``mmkd`` under an MMEngine root registry. ``get(name)`` asks
    the registry of :func:`host_scope` in the same tree (mmdet's, mmpretrain's) first,
    then the root; nothing is registered here (mmkd registers into the roots, see
    :mod:`mmkd.registry`)."""

    def get(self, key: str) -> Optional[Type]:
        host = self.parent._search_child(host_scope())
        if host is not None and host is not self:
            found = host.get(key)
            if found is not None:
                return found
        return super().get(key)

