"""mmkd: feature distillation for MMDetection / MMEngine.

Like mmdet, the package carries its ``configs/`` and ``tools/`` as ``mmkd/.mim/`` (what
openmim's ``mim train/test/run mmkd`` and MMEngine's ``mmkd::`` config paths read):

* in the repository (and so in an editable install, ``pip install -e .``)
  ``mmkd/.mim/configs`` and ``mmkd/.mim/tools`` are symbolic links to the top-level
  folders (committed; recreated here if a checkout lost them);
* a wheel (``pip install .``, ``pip wheel .``) gets real copies, written into the build
  folder by ``build_py`` below, so building never touches the source tree.
"""
import os
import os.path as osp
import shutil
import warnings

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
#: top-level folders mirrored into mmkd/.mim
MIM_LINKS = ('configs', 'tools')
#: files that live in mmkd/.mim itself
MIM_FILES = ('model-index.yml',)
_SKIP = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info')


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(HERE, 'mmkd', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def add_mim_links() -> None:
    """Make ``mmkd/.mim/{configs,tools}`` links to the top-level folders where they are
    missing (editable mode; a copy where the file system has no symbolic links)."""
    mim = osp.join(HERE, 'mmkd', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_LINKS:
        src, dst = osp.join(HERE, name), osp.join(mim, name)
        if osp.lexists(dst) or not osp.isdir(src):
            continue
        try:
            os.symlink(osp.relpath(src, mim), dst)
        except OSError:
            warnings.warn(f'cannot link {dst} -> {src}; copying it instead')
            shutil.copytree(src, dst, ignore=_SKIP)


def copy_mim_extension(package_dir: str) -> None:
    """Write real copies of configs/ and tools/ (and the .mim files) into
    ``package_dir/.mim`` (a wheel cannot hold symbolic links)."""
    mim = osp.join(package_dir, '.mim')
    if osp.isdir(mim):
        shutil.rmtree(mim)
    os.makedirs(mim)
    for name in MIM_LINKS:
        shutil.copytree(osp.join(HERE, name), osp.join(mim, name), ignore=_SKIP)
    for name in MIM_FILES:
        shutil.copyfile(osp.join(HERE, 'mmkd', '.mim', name), osp.join(mim, name))


class BuildPyWithMim(build_py):
    """``build_py`` that also puts ``mmkd/.mim`` into the build (copies), or, for an
    editable install, makes sure the source tree has its links."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            add_mim_links()
        else:
            copy_mim_extension(osp.join(self.build_lib, 'mmkd'))

    def get_outputs(self, include_bytecode: bool = True):
        outputs = list(super().get_outputs(include_bytecode))
        if getattr(self, 'editable_mode', False):
            return outputs
        mim = osp.join(self.build_lib, 'mmkd', '.mim')
        for root, _, files in os.walk(mim):
            outputs.extend(osp.join(root, f) for f in files)
        return outputs


setup(
    name='mmkd',
    version=read_version(),
    description='Knowledge distillation (LSH, ND, FCFD, AMD, KD, FitNet) for '
    'MMDetection and MMPretrain',
    long_description=open(osp.join(HERE, 'README.md')).read()
    if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmkd', 'mmkd.*']),
    cmdclass={'build_py': BuildPyWithMim},
    python_requires='>=3.8',
    # torch and mmcv are installed by the user (CUDA build) or by the Makefile (CPU build);
    # they are not listed so that pip never swaps a cluster's CUDA torch for another one.
    install_requires=[
        'mmengine>=0.10.0,<1.0.0',
        'mmdet>=3.3.0,<3.4.0',
        'pycocotools',
    ],
    extras_require=dict(cls=['mmpretrain>=1.2.0,<1.3.0'], tests=['pytest'],
                        mim=['openmim'], tensorboard=['tensorboard']),
    license='Apache License 2.0',
    zip_safe=False,
)
