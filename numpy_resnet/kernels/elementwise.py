"""Elementwise kernels of the fast path (ReLU), on every core, keeping the input's memory layout.

An elementwise operation does not care how the array is laid out, only that the output and
the input line up: `np.empty_like(x)` gives an array with x's strides, and for an array
that is contiguous in some order (C order or channels-last) `ravel(order="K")` is a flat
view of its memory, so the kernel walks both flat buffers side by side.
"""

from __future__ import annotations

import numba
import numpy as np

from . import threads
from .threads import parallel

# Each kernel works on entries lo <= i < hi. It slices them out first and then counts from 0:
# Numba can then prove that no index is negative, and LLVM turns the loop into vector
# instructions (about ten times faster than indexing x[i] for i in range(lo, hi)).

def _relu(x, lo, hi, y):
    """y = max(x, 0), as np.maximum: a NaN stays NaN, -0.0 gives 0.0."""
    x, y = x[lo:hi], y[lo:hi]
    for i in range(x.size):
        y[i] = 0 if x[i] <= 0 else x[i]            # NaN <= 0 is False: NaN stays


def _relu_backward(dy, y, lo, hi, dx):
    """dx = dy · [y > 0], which is dy · [x > 0]: y > 0 exactly where x > 0."""
    dy, y, dx = dy[lo:hi], y[lo:hi], dx[lo:hi]
    for i in range(dx.size):
        dx[i] = dy[i] * (y[i] > 0)


_relu = numba.njit(nogil=True, cache=True)(_relu)
_relu_backward = numba.njit(nogil=True, cache=True)(_relu_backward)


def flat_view(a: np.ndarray) -> np.ndarray | None:
    """The memory of `a` as a 1-D view in memory order, or None if it has gaps."""
    flat = a.ravel(order="K")
    return flat if np.may_share_memory(flat, a) or a.size == 0 else None


def matching_layout(a: np.ndarray, template: np.ndarray) -> np.ndarray:
    """`a` itself if it has template's strides, else a copy of `a` laid out like template."""
    if a.strides == template.strides:
        return a
    out = np.empty_like(template)
    out[...] = a
    return out


def relu(x: np.ndarray) -> np.ndarray | None:
    """max(x, 0) with x's layout, or None if x is not contiguous in any order."""
    x_flat = flat_view(x)
    if x_flat is None:
        return None
    y = np.empty_like(x)
    y_flat = y.ravel(order="K")
    parallel(lambda w, lo, hi: _relu(x_flat, lo, hi, y_flat), x.size, threads.GRAIN)
    return y


def relu_backward(grad_output: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy · [y > 0], laid out like y (y: the forward's output, contiguous)."""
    dy_flat = matching_layout(grad_output, y).ravel(order="K")
    dx = np.empty_like(y)
    dx_flat, y_flat = dx.ravel(order="K"), y.ravel(order="K")
    parallel(lambda w, lo, hi: _relu_backward(dy_flat, y_flat, lo, hi, dx_flat), y.size, threads.GRAIN)
    return dx
