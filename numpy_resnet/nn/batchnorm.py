"""BatchNorm2d (Ioffe & Szegedy, 2015): normalise each channel over the batch and the image.

Train, per channel c over the M = N·H·W values x_i:
    μ = (1/M) Σ x_i,   σ² = (1/M) Σ (x_i - μ)²,   x̂_i = (x_i - μ) / √(σ² + ε),   y_i = γ x̂_i + β
Backward (the compact form; lesson 03 derives it step by step):
    dβ = Σ dy_i,   dγ = Σ dy_i x̂_i,
    dx_i = γ / (M √(σ² + ε)) · (M dy_i - Σ_j dy_j - x̂_i Σ_j dy_j x̂_j)
Running statistics, PyTorch's convention (momentum weighs the *new* value; the stored
variance is the unbiased one, σ² · M / (M - 1)):
    running_mean ← (1 - momentum) running_mean + momentum μ
    running_var  ← (1 - momentum) running_var  + momentum σ² M / (M - 1)
Eval uses the running statistics, so y is an affine function of x:  dx = γ dy / √(running_var + ε).

This is the reference. The fast engine (numpy_resnet/engine) runs the same formulas as loops
over channels-last memory (kernels/batchnorm_nhwc.py); tests check that the two agree.
"""

from __future__ import annotations

import numpy as np

from .arguments import float_dtype, fraction, positive_float, positive_int
from .module import DEFAULT_DTYPE, Module, Parameter, check_grad, check_input


class BatchNorm2d(Module):
    """x: (N, C, H, W) -> y: (N, C, H, W).  weight γ, bias β, running_mean, running_var: (C,)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 dtype=DEFAULT_DTYPE):
        super().__init__()
        self.num_features = positive_int(self, "num_features", num_features)
        self.eps = positive_float(self, "eps", eps)
        # None: cumulative average, as in PyTorch
        self.momentum = None if momentum is None else fraction(self, "momentum", momentum)
        dtype = float_dtype(self, dtype)
        self.weight = Parameter(np.ones(num_features, dtype))     # γ
        self.bias = Parameter(np.zeros(num_features, dtype))      # β
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        self.cache = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, ndim=4, channels=self.num_features)
        if self.training:
            M = x.shape[0] * x.shape[2] * x.shape[3]
            if M < 2:
                raise ValueError(f"{self!r}: training needs more than one value per channel, "
                                 f"got input {x.shape}")
            # sums over M values are accumulated in float64, as PyTorch does on the CPU
            mu = x.mean(axis=(0, 2, 3), dtype=np.float64)             # μ
            var = x.var(axis=(0, 2, 3), dtype=np.float64)             # σ² (biased, 1/M)
            self._update_running_stats(mu, var, M)
        else:
            mu, var = self.running_mean, self.running_var
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)     # 1 / √(σ² + ε)
        x_hat = (x - mu.astype(x.dtype)[:, None, None]) * inv_std[:, None, None]   # x̂
        self.cache = (x_hat, inv_std, self.training)
        return self.weight.data[:, None, None] * x_hat + self.bias.data[:, None, None]

    def _update_running_stats(self, mu: np.ndarray, var: np.ndarray, M: int) -> None:
        self.num_batches_tracked = self.num_batches_tracked + 1
        if self.momentum is None:
            m = 1.0 / float(self.num_batches_tracked)
        else:
            m = self.momentum
        self.running_mean = ((1 - m) * self.running_mean + m * mu).astype(self.running_mean.dtype)
        unbiased = var * M / (M - 1)
        self.running_var = ((1 - m) * self.running_var + m * unbiased).astype(self.running_var.dtype)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        x_hat, inv_std, used_batch_stats = self._saved()
        check_grad(self, grad_output, x_hat.shape)
        dy = grad_output
        sum_dy = dy.sum(axis=(0, 2, 3), dtype=np.float64)                   # Σ dy
        sum_dy_xhat = (dy * x_hat).sum(axis=(0, 2, 3), dtype=np.float64)    # Σ dy x̂
        self.bias.grad += sum_dy.astype(dy.dtype)                           # dβ = Σ dy
        self.weight.grad += sum_dy_xhat.astype(dy.dtype)                    # dγ = Σ dy x̂
        scale = (self.weight.data * inv_std)[:, None, None]                 # γ / √(σ² + ε)
        if not used_batch_stats:
            return dy * scale                                               # statistics are constants
        # dx = γ/√(σ²+ε) · (dy - mean(dy) - x̂ · mean(dy x̂)), the formula above divided by M
        M = dy.shape[0] * dy.shape[2] * dy.shape[3]
        mean_dy = (sum_dy / M).astype(dy.dtype)[:, None, None]
        mean_dy_xhat = (sum_dy_xhat / M).astype(dy.dtype)[:, None, None]
        return scale * (dy - mean_dy - x_hat * mean_dy_xhat)
