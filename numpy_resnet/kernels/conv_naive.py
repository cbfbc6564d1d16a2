"""Convolution straight from its definition: four loops and a dot product.

    y[n, o, h_o, w_o] = b[o] + Σ_{c, i, j} W[o, c, i, j] · x_pad[n, g·C_g + c, h_o·s + i, w_o·s + j]

where output channel o belongs to group g = o // (C_out / groups) and C_g = C_in / groups.
Too slow for training; it is here to be read, and to check the fast versions against.
"""

from __future__ import annotations

import numpy as np

from .im2col_numpy import conv_output_size


def conv2d_naive(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                 stride: int = 1, padding: int = 0, groups: int = 1) -> np.ndarray:
    """x: (N, C_in, H, W), weight: (C_out, C_in/groups, kh, kw) -> y: (N, C_out, H_out, W_out)."""
    N, C_in, H, W = x.shape
    C_out, C_g, kh, kw = weight.shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    p = padding
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out_per_group = C_out // groups
    y = np.zeros((N, C_out, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for o in range(C_out):
            g = o // out_per_group
            for h_o in range(H_out):
                for w_o in range(W_out):
                    h, w = h_o * stride, w_o * stride
                    window = x_pad[n, g * C_g:(g + 1) * C_g, h:h + kh, w:w + kw]
                    y[n, o, h_o, w_o] = np.sum(window * weight[o])
            if bias is not None:
                y[n, o] += bias[o]
    return y
