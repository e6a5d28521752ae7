"""mmkd: feature distillation for MMDetection / MMEngine."""
import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mmkd', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmkd',
    version=read_version(),
    description='Knowledge distillation (LSH, ND, FCFD, AMD, KD, FitNet) for '
    'MMDetection and MMPretrain',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmkd', 'mmkd.*']),
    python_requires='>=3.8',
    # torch and mmcv are installed by the user (CUDA build) or by the Makefile (CPU build);
    # they are not listed so that pip never swaps a cluster's CUDA torch for another one.
    install_requires=[
        'mmengine>=0.10.0,<1.0.0',
        'mmdet>=3.3.0,<3.4.0',
        'pycocotools',
    ],
    extras_require=dict(cls=['mmpretrain>=1.2.0,<1.3.0'], tests=['pytest']),
    license='Apache License 2.0',
    zip_safe=False,
)
