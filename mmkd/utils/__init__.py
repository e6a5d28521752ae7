"""Helpers shared by mmkd's models and tools."""
from .class_means import load_class_means, save_class_means  # noqa: F401
from .export import export_student, student_checkpoint  # noqa: F401
