"""Models: distillers (what runs), recorders (how features are captured), connectors
(adapters) and losses (the math)."""
from . import connectors, distillers, losses, recorders  # noqa: F401
from .distillers import BaseDistiller, DetectionDistiller  # noqa: F401
