"""Recorders: how features are captured from the student and the teacher."""
from .classifier_recorder import ClassifierRecorder
from .dense_targets_recorder import DenseTargetsRecorder
from .module_recorder import ModuleOutputRecorder, get_submodule
from .roi_recorder import RoIHeadRecorder, RoIOutputs, sampled_roi_labels

__all__ = [
    'ClassifierRecorder', 'DenseTargetsRecorder', 'ModuleOutputRecorder', 'get_submodule', 'RoIHeadRecorder',
    'RoIOutputs', 'sampled_roi_labels'
]
