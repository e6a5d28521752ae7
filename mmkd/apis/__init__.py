"""Procedures that run models end to end (used by ``tools/``)."""
from .class_means import (ClassMeanAccumulator, compute_class_means,  # noqa: F401
                          write_class_means)
