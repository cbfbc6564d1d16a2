"""Layers with hand-written forward and backward, named as in `torch.nn`."""

from . import init
from .activation import ReLU, Sigmoid
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .linear import Dropout, Flatten, Identity, Linear
from .loss import CrossEntropyLoss
from .module import Module, ModuleList, Parameter, Sequential
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "init", "Module", "ModuleList", "Parameter", "Sequential", "Conv2d", "BatchNorm2d", "ReLU", "Sigmoid",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "Flatten", "Identity",
    "Dropout", "CrossEntropyLoss",
]
