"""Connectors: trainable adapters between student and teacher feature spaces."""
from .connectors import ConvBNConnector, ConvConnector, LinearConnector, NDProjector

__all__ = ['ConvConnector', 'ConvBNConnector', 'LinearConnector', 'NDProjector']
