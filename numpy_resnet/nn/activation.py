"""ReLU: y = max(x, 0), elementwise; its gradient passes where x > 0 and stops elsewhere."""

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
