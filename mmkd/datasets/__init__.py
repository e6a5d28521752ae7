"""Datasets and data generators used by mmkd's tests and demos."""
from .synthetic_cifar import SyntheticCIFAR100
from .synthetic_classification import (CLS_GENERATOR_VERSION, class_names,
                                       cls_generation_params, generate_cifar_dataset,
                                       generate_imagenet_folder, read_cls_stamp,
                                       render_cls_sample)
from .synthetic_coco import SyntheticCocoDataset
from .synthetic_detection import (CLASSES, GENERATOR_VERSION, PALETTE,
                                  STAMP_FILE, SyntheticObject, coco_statistics,
                                  detection_metainfo,
                                  generate_detection_dataset,
                                  generation_params, read_stamp,
                                  render_sample, validate_coco_annotations)

__all__ = [
    'CLASSES', 'PALETTE', 'GENERATOR_VERSION', 'STAMP_FILE', 'SyntheticObject',
    'detection_metainfo', 'render_sample', 'generate_detection_dataset',
    'validate_coco_annotations', 'coco_statistics', 'read_stamp',
    'generation_params', 'SyntheticCIFAR100', 'CLS_GENERATOR_VERSION', 'class_names',
    'cls_generation_params', 'generate_cifar_dataset', 'generate_imagenet_folder',
    'read_cls_stamp', 'render_cls_sample', 'SyntheticCocoDataset'
]
