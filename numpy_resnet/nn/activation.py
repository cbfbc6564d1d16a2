"""Elementwise activations.

ReLU     y = max(x, 0): its gradient passes where x > 0 and stops elsewhere
Sigmoid  y = σ(x), in (0, 1): a gate; its gradient is y(1 − y)
"""

from __future__ import annotations

import numpy as np

from .arguments import flag
from .module import Module, check_grad, check_input


class ReLU(Module):
    """y = max(x, 0), elementwise.  x, y: any shape.

    At x = 0 the function has a kink; like PyTorch we take the derivative there to be 0.
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = flag(self, "inplace", inplace)   # as torch's; we never overwrite x
        self.mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, ndim=None)
        self.mask = x > 0                       # remembered for backward
        return np.maximum(x, 0)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        mask = self._saved("mask")
        check_grad(self, grad_output, mask.shape)
        return grad_output * mask               # dL/dx = dL/dy where x > 0, else 0


class Sigmoid(Module):
    """y = σ(x) = 1 / (1 + e^(−x)), elementwise.  x, y: any shape.  y lies in (0, 1): a gate.

    Computed as 1 / (1 + e^(−|x|)) for x ≥ 0 and e^(−|x|) / (1 + e^(−|x|)) for x < 0, the
    same number, so that e^(−x) never overflows for a very negative x.
    """

    def __init__(self):
        super().__init__()
        self.out = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, ndim=None)
        z = np.exp(-np.abs(x))                  # in (0, 1]: no overflow
        y = np.where(x >= 0, 1 / (1 + z), z / (1 + z))
        self.out = y                            # the derivative is written with y
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        y = self._saved("out")
        check_grad(self, grad_output, y.shape)
        return grad_output * y * (1 - y)        # dσ/dx = σ(x)(1 − σ(x))
