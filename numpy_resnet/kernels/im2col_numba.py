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


def _im2col(x, kh, kw, stride, padding, cols):
    """Fill cols[(c, i, j), (n, h_o, w_o)] = x_pad[n, c, h_o·s + i, w_o·s + j]."""
    N, C, H, W = x.shape
    H_out = (H + 2 * padding - kh) // stride + 1
    W_out = (W + 2 * padding - kw) // stride + 1
    for row in prange(C * kh * kw):             # rows are independent: split across cores
        c = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        for n in range(N):
            for h_o in range(H_out):
                h = h_o * stride - padding + i
                start = (n * H_out + h_o) * W_out
                for w_o in range(W_out):
                    w = w_o * stride - padding + j
                    if 0 <= h < H and 0 <= w < W:
                        cols[row, start + w_o] = x[n, c, h, w]
                    else:
                        cols[row, start + w_o] = 0      # zero padding


def _col2im(cols, kh, kw, stride, padding, dx):
    """dx[n, c, h, w] += every cols entry that im2col copied from x[n, c, h, w]."""
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
                for h_o in range(H_out):
                    h = h_o * stride - padding + i
                    if h < 0 or h >= H:
                        continue
                    start = (n * H_out + h_o) * W_out
                    for w_o in range(W_out):
                        w = w_o * stride - padding + j
                        if 0 <= w < W:
                            dx[n, c, h, w] += cols[row, start + w_o]


_im2col_jit = numba.njit(parallel=True, cache=True)(_im2col)
_col2im_jit = numba.njit(parallel=True, cache=True)(_col2im)


def im2col_numba(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> np.ndarray:
    """x: (N, C, H, W) -> cols: (C·kh·kw, N·H_out·W_out)."""
    N, C, H, W = x.shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    cols = np.empty((C * kh * kw, N * H_out * W_out), dtype=x.dtype)
    _im2col_jit(np.ascontiguousarray(x), kh, kw, stride, padding, cols)
    return cols


def col2im_numba(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: int,
                 padding: int) -> np.ndarray:
    """cols: (C·kh·kw, N·H_out·W_out) -> dx: (N, C, H, W)."""
    dx = np.empty(x_shape, dtype=cols.dtype)
    _col2im_jit(np.ascontiguousarray(cols), kh, kw, stride, padding, dx)
    return dx
