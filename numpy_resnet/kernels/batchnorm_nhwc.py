"""The fast BatchNorm: the formulas of nn/batchnorm.py as kernels over channels-last rows.

A channels-last (N, C, H, W) array is an (M, C) matrix with M = N·H·W rows (conv_nhwc.py):
each channel is a column, so per-channel sums run down the columns and every row is one
pass of C contiguous values. Each worker (threads.py) takes a range of rows; sums are kept
per worker in float64 and added up, so the result does not depend on the number of workers
beyond rounding.

Forward (train) makes two passes over x, as NumPy's x.var does: μ, then σ² = mean((x - μ)²),
and a third that writes y. It keeps x itself for backward rather than x̂, which backward
recomputes with the same operations, so the numbers are those of the NumPy layer:

    x̂ = (x - μ) · (1/√(σ² + ε)),  y = γ x̂ + β
    dx = γ/√(σ² + ε) · (dy - mean(dy) - x̂ · mean(dy x̂))     (eval: dx = γ/√(var + ε) · dy)
"""

from __future__ import annotations

import numba
import numpy as np

from . import threads
from .conv_nhwc import from_nhwc, to_nhwc
from .threads import parallel

# ----- kernels over rows lo <= r < hi of (M, C) matrices -------------------------------------
# Each kernel slices its rows out first and counts from 0, so that Numba can prove no index
# is negative and LLVM vectorises the loop over the channels (see elementwise.py).

def _column_sums(x, lo, hi):
    """Σ_r x[r, c] for each c, in float64."""
    x = x[lo:hi]
    total = np.zeros(x.shape[1], np.float64)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            total[c] += x[r, c]
    return total


def _centered_squares(x, mu, lo, hi):
    """Σ_r (x[r, c] - μ[c])² for each c, in float64."""
    x = x[lo:hi]
    total = np.zeros(x.shape[1], np.float64)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            d = x[r, c] - mu[c]
            total[c] += d * d
    return total


def _normalize(x, mu, inv_std, gamma, beta, lo, hi, y, relu, s):
    """y = γ · ((x - μ) · inv_std) + β, in x's dtype; plus s (a block's shortcut) unless s is
    None, then max(y, 0) if relu (as _relu does). Each step rounds as the separate passes do."""
    x, y = x[lo:hi], y[lo:hi]
    s_rows = s[lo:hi] if s is not None else x
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            v = gamma[c] * ((x[r, c] - mu[c]) * inv_std[c]) + beta[c]
            if s is not None:
                v = v + s_rows[r, c]
            y[r, c] = (0 if v <= 0 else v) if relu else v


# z: None, or the output of a ReLU that follows the BatchNorm, whose backward is folded in:
# the BatchNorm's dy is then dz · [z > 0], formed on the fly. Numba compiles the two cases
# apart and drops the branches on `z is None` that cannot run (z itself is never reassigned,
# so that it can tell); z_rows then stands in for z[lo:hi].

def _backward_sums(dy, x, mu, inv_std, lo, hi, z):
    """(Σ dy, Σ dy·x̂) for each channel, in float64; x̂ recomputed from x."""
    dy, x = dy[lo:hi], x[lo:hi]
    z_rows = z[lo:hi] if z is not None else dy
    sum_dy = np.zeros(x.shape[1], np.float64)
    sum_dy_xhat = np.zeros(x.shape[1], np.float64)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            g = dy[r, c]
            if z is not None:
                g = g * (z_rows[r, c] > 0)
            x_hat = (x[r, c] - mu[c]) * inv_std[c]
            sum_dy[c] += g
            sum_dy_xhat[c] += g * x_hat
    return sum_dy, sum_dy_xhat


def _backward_dx(dy, x, mu, inv_std, scale, mean_dy, mean_dy_xhat, lo, hi, dx, z):
    """dx = scale · (dy - mean(dy) - x̂ · mean(dy x̂)), scale = γ · inv_std."""
    dy, x, dx = dy[lo:hi], x[lo:hi], dx[lo:hi]
    z_rows = z[lo:hi] if z is not None else dy
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            g = dy[r, c]
            if z is not None:
                g = g * (z_rows[r, c] > 0)
            x_hat = (x[r, c] - mu[c]) * inv_std[c]
            dx[r, c] = scale[c] * (g - mean_dy[c] - x_hat * mean_dy_xhat[c])


def _scale_rows(dy, scale, lo, hi, dx, z):
    """dx = scale · dy per channel (eval: the statistics are constants)."""
    dy, dx = dy[lo:hi], dx[lo:hi]
    z_rows = z[lo:hi] if z is not None else dy
    for r in range(dy.shape[0]):
        for c in range(dy.shape[1]):
            g = dy[r, c]
            if z is not None:
                g = g * (z_rows[r, c] > 0)
            dx[r, c] = g * scale[c]


_jit = numba.njit(nogil=True, cache=True)
_column_sums, _centered_squares, _normalize = _jit(_column_sums), _jit(_centered_squares), _jit(_normalize)
_backward_sums, _backward_dx, _scale_rows = _jit(_backward_sums), _jit(_backward_dx), _jit(_scale_rows)


# ----- forward and backward ---------------------------------------------------------------
def _rows(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W), any layout -> its channels-last memory as an (N·H·W, C) matrix."""
    return to_nhwc(x).reshape(-1, x.shape[1])


def _output_like(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A new channels-last array shaped like x, and its (M, C) rows."""
    y_nhwc = np.empty((x.shape[0], x.shape[2], x.shape[3], x.shape[1]), x.dtype)
    return from_nhwc(y_nhwc), y_nhwc.reshape(-1, x.shape[1])


def _grain(x_rows: np.ndarray) -> int:
    """Rows worth a worker (threads.GRAIN values): small arrays stay on the calling thread."""
    return max(1, threads.GRAIN // max(x_rows.shape[1], 1))


def _sum_over_workers(fn, M: int, grain: int):
    parts = parallel(fn, M, grain)
    if isinstance(parts[0], tuple):
        return tuple(sum(p[i] for p in parts) for i in range(len(parts[0])))
    return sum(parts)


def batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x: (N, C, H, W) -> (μ, σ²) per channel, float64; σ² is the biased variance (1/M)."""
    x_rows = _rows(x)
    M = x_rows.shape[0]
    grain = _grain(x_rows)
    mu = _sum_over_workers(lambda w, lo, hi: _column_sums(x_rows, lo, hi), M, grain) / M
    var = _sum_over_workers(lambda w, lo, hi: _centered_squares(x_rows, mu, lo, hi), M, grain) / M
    return mu, var


def normalize(x: np.ndarray, mu: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
              beta: np.ndarray, relu: bool = False, residual: np.ndarray | None = None) -> np.ndarray:
    """y = γ · ((x - μ) · inv_std) + β: (N, C, H, W) -> (N, C, H, W) channels-last.

    mu, inv_std, gamma, beta: (C,) in x's dtype. Folded into the same pass (numpy_resnet/engine/fused.py):
    residual, x's shape and dtype: return y + residual (a residual block's sum); relu: then
    max(·, 0) (the ReLU after the BatchNorm or after the sum).
    """
    x_rows = _rows(x)
    s_rows = None if residual is None else _rows(residual)
    y, y_rows = _output_like(x)
    parallel(lambda w, lo, hi: _normalize(x_rows, mu, inv_std, gamma, beta, lo, hi, y_rows, relu,
                                          s_rows),
             x_rows.shape[0], _grain(x_rows))
    return y


def backward(grad_output: np.ndarray, x: np.ndarray, mu: np.ndarray, inv_std: np.ndarray,
             gamma: np.ndarray, used_batch_stats: bool, relu_output: np.ndarray | None = None):
    """(dx channels-last, dγ, dβ) for y = γ · ((x - μ) · inv_std) + β; dγ, dβ in float64.

    mu, inv_std, gamma: (C,) in x's dtype; x is the forward's input. relu_output z: the
    output of a ReLU after the BatchNorm, whose backward is folded in: grad_output is then
    dL/dz, and dL/dy = dL/dz · [z > 0] is formed on the fly instead of in a pass of its own.
    """
    dy_rows, x_rows = _rows(grad_output), _rows(x)
    z_rows = None if relu_output is None else _rows(relu_output)
    M, dtype, grain = x_rows.shape[0], x.dtype, _grain(x_rows)
    sum_dy, sum_dy_xhat = _sum_over_workers(
        lambda w, lo, hi: _backward_sums(dy_rows, x_rows, mu, inv_std, lo, hi, z_rows), M, grain)
    scale = gamma * inv_std                                         # γ / √(σ² + ε)
    dx, dx_rows = _output_like(x)
    if not used_batch_stats:
        parallel(lambda w, lo, hi: _scale_rows(dy_rows, scale, lo, hi, dx_rows, z_rows), M, grain)
        return dx, sum_dy_xhat, sum_dy
    mean_dy = (sum_dy / M).astype(dtype)
    mean_dy_xhat = (sum_dy_xhat / M).astype(dtype)
    parallel(lambda w, lo, hi: _backward_dx(dy_rows, x_rows, mu, inv_std, scale, mean_dy,
                                            mean_dy_xhat, lo, hi, dx_rows, z_rows), M, grain)
    return dx, sum_dy_xhat, sum_dy
