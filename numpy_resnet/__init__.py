"""numpy-resnet: residual networks in pure NumPy, every backward pass written by hand."""

from . import nn
from .random import manual_seed

__version__ = "0.1.0"

__all__ = ["nn", "manual_seed", "__version__"]
