"""Models: distillers (what runs), recorders (how features are captured), connectors
(adapters), losses (the math) and the CIFAR ResNet backbones."""
from . import backbones, connectors, distillers, losses, recorders  # noqa: F401
from .distillers import (BaseDistiller, ClassificationDistiller,  # noqa: F401
                         DetectionDistiller)
