"""im2col and col2im in plain NumPy: the readable reference.

im2col unfolds every k_h x k_w window of a padded image into one column, so that a
convolution becomes one matrix product:

    cols[(c, i, j), (n, h_o, w_o)] = x_pad[n, c, h_o·s + i, w_o·s + j]
    x: (N, C, H, W)  ->  cols: (C·k_h·k_w, N·H_out·W_out)

col2im is its adjoint (transpose): it adds every column entry back where it came from.
Windows overlap when stride < kernel, so entries add up; that sum is the gradient of im2col.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """H_out = floor((H + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col_numpy(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> np.ndarray:
    """x: (N, C, H, W) -> cols: (C·kh·kw, N·H_out·W_out), by stride tricks (no Python loop)."""
    N, C, H, W = x.shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    p = padding
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else np.ascontiguousarray(x)
    sN, sC, sH, sW = x_pad.strides
    # windows[n, c, i, j, h_o, w_o] = x_pad[n, c, h_o·s + i, w_o·s + j]: a view, no copy
    windows = as_strided(x_pad, shape=(N, C, kh, kw, H_out, W_out),
                         strides=(sN, sC, sH, sW, sH * stride, sW * stride), writeable=False)
    # put (c, i, j) on the rows and (n, h_o, w_o) on the columns: this copy is the im2col
    return windows.transpose(1, 2, 3, 0, 4, 5).reshape(C * kh * kw, N * H_out * W_out)


def col2im_numpy(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: int,
                 padding: int) -> np.ndarray:
    """cols: (C·kh·kw, N·H_out·W_out) -> dx: (N, C, H, W), adding overlapping windows."""
    N, C, H, W = x_shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    p = padding
    cols = cols.reshape(C, kh, kw, N, H_out, W_out)
    dx_pad = np.zeros((N, C, H + 2 * p, W + 2 * p), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # kernel offset (i, j) touched x_pad[:, :, h_o·s + i, w_o·s + j] for every output
            rows = slice(i, i + stride * H_out, stride)
            columns = slice(j, j + stride * W_out, stride)
            dx_pad[:, :, rows, columns] += cols[:, i, j].transpose(1, 0, 2, 3)
    return dx_pad[:, :, p:p + H, p:p + W]
