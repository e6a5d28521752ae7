"""mmdet's COCO reader for the generated detection data, with the annotation file
checked before it is read."""
from typing import List

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path

from .synthetic_detection import validate_coco_annotations


@DATASETS.register_module()
class SyntheticCocoDataset(CocoDataset):
    """mmdet's :class:`~mmdet.datasets.CocoDataset` that validates its ``ann_file``
    with :func:`~mmkd.datasets.validate_coco_annotations` first.

    The stock reader silently drops an annotation with a negative or empty box, an
    unknown ``category_id`` or a box outside its image (``parse_data_info`` skips it),
    so a corrupt file trains on fewer objects without a word. Here such a file stops the
    run when the dataset is built, with a one-line error naming the file, the annotation
    id, what is wrong and how to regenerate the data. Everything else — the COCO API,
    the data list, filtering, ``metainfo`` — is ``CocoDataset``'s own code.
    """

    def load_data_list(self) -> List[dict]:
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            validate_coco_annotations(local_path)
        return super().load_data_list()
