"""numpy-resnet: residual networks in pure NumPy, every backward pass written by hand."""

from . import models, nn
from .random import manual_seed
from .summary import summary

__version__ = "0.1.0"

__all__ = ["nn", "models", "manual_seed", "summary", "__version__"]
