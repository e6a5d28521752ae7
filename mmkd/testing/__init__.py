"""Helpers for tests: run full-size configs for a few iterations on the tiny generated
dataset (no downloads, CPU)."""
from .tiny_config import (RandomCheckpointCache, build_model, config_digest,
                          detect_cls_format, detect_format, find_urls,
                          generate_tiny_classification_data, inline_model_configs,
                          random_class_means, set_num_classes, shrink_batch_augments,
                          shrink_cls_sizes, shrink_scales, strip_pretrained,
                          tiny_classification_data, tiny_cls_run_config,
                          tiny_detection_data, tiny_run_config, tiny_runtime,
                          write_random_checkpoint)

__all__ = [
    'RandomCheckpointCache', 'build_model', 'config_digest', 'detect_format', 'find_urls',
    'inline_model_configs', 'random_class_means', 'set_num_classes', 'shrink_scales',
    'strip_pretrained', 'tiny_detection_data', 'tiny_run_config', 'tiny_runtime',
    'write_random_checkpoint', 'detect_cls_format', 'generate_tiny_classification_data',
    'shrink_cls_sizes', 'tiny_classification_data', 'tiny_cls_run_config',
    'shrink_batch_augments'
]
