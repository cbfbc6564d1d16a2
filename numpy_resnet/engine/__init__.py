"""The fast engine: the textbook's layers, computed the fast way, chosen by layer type.

    use_engine("fast")        the default: Conv2d, BatchNorm2d, ReLU, MaxPool2d, the
                              residual blocks and the ResNet's stem run their fast twins
                              (layers.py, pooling.py, blocks.py): channels-last memory,
                              Numba loops on every core, Winograd's F(2x2, 3x3), conv ->
                              BN -> ReLU and a block's sum in fewer passes over memory
                              (fused.py)
    use_engine("reference")   every layer runs its own code in nn/, blocks.py and models.py:
                              what the lessons teach and the gradient checks verify

`use_engine` sets the engine at once and, used as `with use_engine("reference"): ...`,
restores the previous one on leaving the block. `get_engine()` says which one is set.

A twin runs only in place of the code it was written for: a subclass that defines forward or
backward, an instance attribute `layer.forward = f`, a method patched on the class, or (for
the fusions, which skip the layers' own calls) a hook on a fused layer runs the code as
written (dispatch.py). The arrows point one way: the engine imports the textbook and the
kernels; neither imports the engine. It plugs in through nn.hooks.set_dispatcher.
"""

from __future__ import annotations

from . import blocks, layers, pooling  # noqa: F401  (each registers its twins)
from .dispatch import ENGINES, get_engine, use_engine

__all__ = ["ENGINES", "get_engine", "use_engine"]
