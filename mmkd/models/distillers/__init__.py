"""Distillers: what runs in a distillation training step."""
from .base_distiller import BaseDistiller, DistillStep
from .classification_distiller import ClassificationDistiller, StagedClassifier
from .detection_distiller import DetectionDistiller, batch_valid_mask
from .loss_binding import LossBinding
from .loss_schedule import LossSchedule
from .teacher import (InputRenormalizer, freeze, load_teacher_checkpoint,
                      resolve_model_config)

__all__ = [
    'BaseDistiller', 'DistillStep', 'ClassificationDistiller', 'StagedClassifier',
    'DetectionDistiller', 'batch_valid_mask',
    'LossBinding', 'LossSchedule', 'InputRenormalizer', 'freeze',
    'load_teacher_checkpoint', 'resolve_model_config'
]
