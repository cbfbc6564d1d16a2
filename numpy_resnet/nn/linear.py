"""Linear, Flatten, Identity and Dropout: the small layers at the end of a ResNet."""

from __future__ import annotations

import numpy as np

from ..seeding import get_rng
from . import init
from .arguments import flag, float_dtype, fraction, integer, positive_int
from .module import DEFAULT_DTYPE, Module, Parameter, check_grad, check_input


class Linear(Module):
    """y = x Wᵀ + b.   x: (N, in_features) -> y: (N, out_features), W: (out, in), b: (out,).

    dW = dyᵀ x,   db = Σ_n dy,   dx = dy W.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=DEFAULT_DTYPE):
        super().__init__()
        self.in_features = positive_int(self, "in_features", in_features)
        self.out_features = positive_int(self, "out_features", out_features)
        bias = flag(self, "bias", bias)
        dtype = float_dtype(self, dtype)
        self.weight = Parameter(np.zeros((out_features, in_features), dtype))
        self.bias = Parameter(np.zeros(out_features, dtype)) if bias else None
        init.default_init_(self.weight, self.bias)
        self.x = None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, ndim=2, channels=self.in_features)
        self.x = x
        y = x @ self.weight.data.T                      # y = x Wᵀ
        if self.bias is not None:
            y = y + self.bias.data                      #   + b
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        x = self._saved("x")
        check_grad(self, grad_output, (len(x), self.out_features))
        self.weight.grad += grad_output.T @ x           # dW = dyᵀ x      (out, in)
        if self.bias is not None:
            self.bias.grad += grad_output.sum(axis=0)   # db = Σ_n dy
        return grad_output @ self.weight.data           # dx = dy W       (N, in)


class Flatten(Module):
    """x: (N, C, H, W) -> (N, C·H·W); backward puts the shape back."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = integer(self, "start_dim", start_dim)
        self.shapes = None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, ndim=None)
        if not -x.ndim <= self.start_dim < x.ndim:
            raise ValueError(f"{self!r}: start_dim is out of range for an input of shape {x.shape}")
        y = x.reshape(*x.shape[:self.start_dim], -1)
        self.shapes = (x.shape, y.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        x_shape, y_shape = self._saved("shapes")
        check_grad(self, grad_output, y_shape)
        return grad_output.reshape(x_shape)


class Identity(Module):
    """y = x, dx = dy. A placeholder (e.g. the shortcut of a block that keeps its shape)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return grad_output


class Dropout(Module):
    """Inverted dropout. Train: y = x · m / (1 - p), m ~ Bernoulli(1 - p); eval: y = x.

    dx = dy · m / (1 - p): the same mask scales the gradient.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = fraction(self, "p", p, below_one=True)     # p = 1 would divide by 0
        self.cache = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, ndim=None)
        if not self.training or self.p == 0:
            self.cache = (np.ones((), dtype=x.dtype), x.shape)
            return x
        keep = get_rng().random(x.shape) >= self.p
        scale = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        self.cache = (scale, x.shape)
        return x * scale

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        scale, x_shape = self._saved()
        check_grad(self, grad_output, x_shape)
        return grad_output * scale
