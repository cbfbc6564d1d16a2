"""numpy-resnet: residual networks in pure NumPy, every backward pass written by hand.

The layers in nn/, blocks.py and models.py are the textbook. The fast engine (engine/) runs
the same equations faster and is the default; `use_engine("reference")` runs the textbook's
own code, as the lessons and the gradient checks do.
"""

from . import models, nn
from .engine import get_engine, use_engine
from .kernels.threads import get_num_threads, set_num_threads
from .seeding import manual_seed
from .summary import summary

__version__ = "0.1.0"

__all__ = ["nn", "models", "use_engine", "get_engine",
           "manual_seed", "summary", "get_num_threads", "set_num_threads", "__version__"]
