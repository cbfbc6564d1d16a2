"""im2col and col2im as Numba kernels: the same loops as the definition, compiled.

Each kernel is a plain Python function first (read it, or step through it with
NUMBA_DISABLE_JIT=1), then jitted with `parallel=True` and `cache=True` (compiled once
per dtype, then loaded from disk). Tests check them against `im2col_numpy`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .im2col_numpy import conv_output_size


def _valid_range(size, out_size, stride, padding, offset):
    """The outputs o whose input o·stride - padding + offset lies inside 0..size-1: [lo, hi)."""
    first = padding - offset                       # need o·stride >= first
    lo = 0 if first <= 0 else (first + stride - 1) // stride
    last = size - 1 + padding - offset             # need o·stride <= last
    hi = 0 if last < 0 else last // stride + 1
    return min(lo, out_size), max(min(hi, out_size), min(lo, out_size))


def _im2col(x, kh, kw, stride, padding, cols):
    """Fill cols[(c, i, j), (n, h_o, w_o)] = x_pad[n, c, h_o·s + i, w_o·s + j]."""
    N, C, H, W = x.shape
    H_out = (H + 2 * padding - kh) // stride + 1
    W_out = (W + 2 * padding - kw) // stride + 1
    for row in prange(C * kh * kw):             # rows are independent: split across cores
        c = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        w_lo, w_hi = _valid_range(W, W_out, stride, padding, j)   # columns inside the image
        for n in range(N):
            for h_o in range(H_out):
                h = h_o * stride - padding + i
                start = (n * H_out + h_o) * W_out
                if h < 0 or h >= H:                 # the whole output row reads padding
                    cols[row, start:start + W_out] = 0
                    continue
                cols[row, start:start + w_lo] = 0
                for w_o in range(w_lo, w_hi):       # no bounds test inside the image
                    cols[row, start + w_o] = x[n, c, h, w_o * stride - padding + j]
                cols[row, start + w_hi:start + W_out] = 0


def _col2im(cols, kh, kw, stride, padding, dx):
    """dx[n, c, h, w] = Σ of every cols entry that im2col copied from x[n, c, h, w]."""
    N, C, H, W = dx.shape
    H_out = (H + 2 * padding - kh) // stride + 1
    W_out = (W + 2 * padding - kw) // stride + 1
    for nc in prange(N * C):                    # each (n, c) image plane is written by one thread
        n = nc // C
        c = nc % C
        dx[n, c] = 0
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                w_lo, w_hi = _valid_range(W, W_out, stride, padding, j)
                for h_o in range(H_out):
                    h = h_o * stride - padding + i
                    if h < 0 or h >= H:
                        continue
                    start = (n * H_out + h_o) * W_out
                    for w_o in range(w_lo, w_hi):
                        dx[n, c, h, w_o * stride - padding + j] += cols[row, start + w_o]


# the kernels call `_valid_range` by name: from here on that name is the compiled version
_valid_range = numba.njit(cache=True, inline="always")(_valid_range)
_im2col_jit = numba.njit(parallel=True, cache=True)(_im2col)
_col2im_jit = numba.njit(parallel=True, cache=True)(_col2im)


def im2col_numba(x: np.ndarray, kh: int, kw: int, stride: int, padding: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """x: (N, C, H, W) -> cols: (C·kh·kw, N·H_out·W_out), written into `out` if given."""
    N, C, H, W = x.shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    shape = (C * kh * kw, N * H_out * W_out)
    if out is None or out.shape != shape or out.dtype != x.dtype:
        out = np.empty(shape, dtype=x.dtype)
    cols = out
    _im2col_jit(np.ascontiguousarray(x), kh, kw, stride, padding, cols)
    return cols


def col2im_numba(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: int,
                 padding: int) -> np.ndarray:
    """cols: (C·kh·kw, N·H_out·W_out) -> dx: (N, C, H, W)."""
    dx = np.empty(x_shape, dtype=cols.dtype)
    _col2im_jit(np.ascontiguousarray(cols), kh, kw, stride, padding, dx)
    return dx
