"""mmpretrain's CIFAR-100 reader for data in the CIFAR-100 format that is not the real
CIFAR-100 (e.g. :func:`~mmkd.datasets.generate_cifar_dataset`'s output)."""
from mmpretrain.datasets import CIFAR100
from mmpretrain.registry import DATASETS


@DATASETS.register_module()
class SyntheticCIFAR100(CIFAR100):
    """mmpretrain's :class:`~mmpretrain.datasets.CIFAR100`, reading
    ``<data_root>/cifar-100-python/{train,test,meta}`` without the md5 checks.

    ``CIFAR100`` verifies the files against the checksums of the real CIFAR-100 archive
    and takes its 100 class names from a built-in list; everything else — unpickling, the
    ``data`` / ``fine_labels`` layout, the ``[N, 32, 32, 3]`` images and the data list —
    is its own code, which this class runs unchanged. Here the checksums are off (so
    generated files are accepted), the class names come from the ``meta`` file
    (``fine_label_names``, as for any CIFAR-format data), and nothing is downloaded
    (``download=False``: missing files are an error naming the generator).
    """

    train_list = [['train', None]]
    test_list = [['test', None]]
    meta = {'filename': 'meta', 'key': 'fine_label_names', 'md5': None}
    METAINFO = {}

    def __init__(self, *args, download: bool = False, **kwargs) -> None:
        if download:
            raise ValueError('SyntheticCIFAR100 cannot download its data; generate it: '
                             'python tools/generate_cls_data.py --out DATA_ROOT')
        try:
            super().__init__(*args, download=False, **kwargs)
        except RuntimeError as err:
            raise RuntimeError(
                f'{err} -- generate the data first: python tools/generate_cls_data.py '
                '--out <data_root>') from err
