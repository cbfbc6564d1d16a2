"""The fast twin of MaxPool2d: the layer's own equations, with the compiled im2col and col2im.

nn/pooling.py unfolds every window with the readable NumPy im2col and folds the gradient back
with col2im; here the same unfold and fold are kernels/im2col_numba.py's, on every core.
"""

from __future__ import annotations

import numpy as np

from ..nn import MaxPool2d
from .dispatch import records, twin
from .layers import check_grad


@twin(MaxPool2d)
class MaxPoolTwin:
    @staticmethod
    def forward(pool: MaxPool2d, x: np.ndarray) -> np.ndarray:
        """x: (N, C, H, W) -> y: (N, C, H_out, W_out), the max of each k x k window."""
        from ..kernels.im2col_numba import im2col_numba
        H_out, W_out = pool._output_size(x)                    # checks x as the layer does
        N, C, H, W = x.shape
        k, s, p = pool.kernel_size, pool.stride, pool.padding
        # as the layer's _windows: N·C one-channel images, padded with -inf, unfolded
        extra_h = max(0, (H_out - 1) * s + k - (H + 2 * p))
        extra_w = max(0, (W_out - 1) * s + k - (W + 2 * p))
        x_pad = np.pad(x.reshape(N * C, 1, H, W), ((0, 0), (0, 0), (p, p + extra_h), (p, p + extra_w)),
                       constant_values=-np.inf)
        cols = im2col_numba(x_pad, k, k, s, 0)                  # (k·k, N·C·H_out·W_out)
        argmax = cols.argmax(axis=0)
        y = cols[argmax, np.arange(cols.shape[1])].reshape(N, C, H_out, W_out)
        records[pool] = (argmax, x_pad.shape, x.shape, y.shape, y.dtype)
        return y

    @staticmethod
    def backward(pool: MaxPool2d, grad_output: np.ndarray) -> np.ndarray:
        """dy -> dx: each dy goes to its window's arg-max, folded back by col2im."""
        from ..kernels.im2col_numba import col2im_numba
        argmax, x_pad_shape, x_shape, y_shape, dtype = records[pool]
        grad_output = check_grad(pool, grad_output, y_shape, dtype)         # compiled for y's dtype
        N, C, H, W = x_shape
        k, s, p = pool.kernel_size, pool.stride, pool.padding
        dcols = np.zeros((k * k, argmax.size), dtype=grad_output.dtype)
        dcols[argmax, np.arange(argmax.size)] = grad_output.ravel()
        dx_pad = col2im_numba(dcols, x_pad_shape, k, k, s, 0)
        return dx_pad[:, 0, p:p + H, p:p + W].reshape(N, C, H, W)
