"""Pooling: max and average over k x k windows, and global average pooling.

Windows are unfolded with the same im2col as convolution, one channel at a time
((N, C, H, W) is viewed as N·C single-channel images), so pooling is a reduction over
the rows of `cols`:  max → y = max_rows cols,  average → y = Σ_rows cols / count.
Backward puts the gradient back into the rows (at the arg-max for max pooling, spread
evenly for average pooling) and folds them with col2im.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from .arguments import flag, square
from .module import Module, check_grad, check_input


def _pool_output_size(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """floor or ceil of (size + 2p - k) / s, plus 1; a last window must start inside the input."""
    if not ceil_mode:
        return (size + 2 * p - k) // s + 1
    out = -(-(size + 2 * p - k) // s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    return out


class _Pool2d(Module):
    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0):
        super().__init__()
        self.kernel_size = square(self, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else square(self, "stride", stride)
        self.padding = square(self, "padding", padding, minimum=0)
        if 2 * self.padding > self.kernel_size:
            raise ValueError(f"{type(self).__name__}: padding should be at most half of "
                             f"kernel_size, got padding={padding}, kernel_size={kernel_size}")
        self.cache = None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _output_size(self, x: np.ndarray, ceil_mode: bool = False) -> tuple[int, int]:
        """Check x: (N, C, H, W) and return (H_out, W_out)."""
        check_input(self, x, ndim=4)
        k, s, p = self.kernel_size, self.stride, self.padding
        H_out = _pool_output_size(x.shape[2], k, s, p, ceil_mode)
        W_out = _pool_output_size(x.shape[3], k, s, p, ceil_mode)
        if H_out < 1 or W_out < 1:
            raise ValueError(f"{self!r}: input {x.shape} is smaller than the kernel")
        return H_out, W_out

    def _windows(self, x: np.ndarray, pad_value: float, H_out: int, W_out: int):
        """x: (N, C, H, W) -> cols: (k·k, N·C·H_out·W_out), padded with `pad_value`.

        Padding is applied here (bottom/right also extended for ceil_mode), so im2col runs
        with padding 0 on a (N·C, 1, H_pad, W_pad) tensor.
        """
        N, C, H, W = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        extra_h = max(0, (H_out - 1) * s + k - (H + 2 * p))
        extra_w = max(0, (W_out - 1) * s + k - (W + 2 * p))
        x_pad = np.pad(x.reshape(N * C, 1, H, W), ((0, 0), (0, 0), (p, p + extra_h), (p, p + extra_w)),
                       constant_values=pad_value)
        cols = kernels.im2col(x_pad, k, k, s, 0)
        return cols, x_pad.shape

    def _fold(self, dcols: np.ndarray, x_pad_shape: tuple, x_shape: tuple) -> np.ndarray:
        """Adjoint of `_windows`: (k·k, N·C·H_out·W_out) -> dx: (N, C, H, W)."""
        N, C, H, W = x_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        dx_pad = kernels.col2im(np.ascontiguousarray(dcols), x_pad_shape, k, k, s, 0)
        return dx_pad[:, 0, p:p + H, p:p + W].reshape(N, C, H, W)


class MaxPool2d(_Pool2d):
    """y[n, c, h_o, w_o] = max over the k x k window.  (N, C, H, W) -> (N, C, H_out, W_out).

    The gradient flows only to the arg-max of each window (the first one on ties, as PyTorch).
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        H_out, W_out = self._output_size(x)
        N, C = x.shape[:2]
        cols, x_pad_shape = self._windows(x, -np.inf, H_out, W_out)   # (k·k, N·C·H_out·W_out)
        argmax = cols.argmax(axis=0)
        y = cols[argmax, np.arange(cols.shape[1])].reshape(N, C, H_out, W_out)
        self.cache = (argmax, x_pad_shape, x.shape, y.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        argmax, x_pad_shape, x_shape, y_shape = self._saved()
        check_grad(self, grad_output, y_shape)
        dcols = np.zeros((self.kernel_size ** 2, argmax.size), dtype=grad_output.dtype)
        dcols[argmax, np.arange(argmax.size)] = grad_output.ravel()   # route dy to the max
        return self._fold(dcols, x_pad_shape, x_shape)


class AvgPool2d(_Pool2d):
    """y = (Σ window) / count.  (N, C, H, W) -> (N, C, H_out, W_out).

    count is k·k, or with count_include_pad=False the number of real (unpadded) inputs;
    as PyTorch, windows that ceil_mode adds past the padding never count the overhang.
    dx: every input of a window receives dy / count.
    """

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.ceil_mode = flag(self, "ceil_mode", ceil_mode)
        self.count_include_pad = flag(self, "count_include_pad", count_include_pad)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", ceil_mode={self.ceil_mode}, "
                f"count_include_pad={self.count_include_pad}")

    def _counts(self, size: int, out: int) -> np.ndarray:
        """How many inputs each output position divides by, along one axis: (out,)."""
        k, s, p = self.kernel_size, self.stride, self.padding
        start = np.arange(out) * s - p
        end = np.minimum(start + k, size + p)          # never past the padding
        if not self.count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        return end - start

    def forward(self, x: np.ndarray) -> np.ndarray:
        H_out, W_out = self._output_size(x, self.ceil_mode)
        N, C, H, W = x.shape
        cols, x_pad_shape = self._windows(x, 0.0, H_out, W_out)
        count = np.outer(self._counts(H, H_out), self._counts(W, W_out)).astype(x.dtype)
        y = cols.sum(axis=0).reshape(N, C, H_out, W_out) / count
        self.cache = (count, x_pad_shape, x.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        count, x_pad_shape, x_shape = self._saved()
        check_grad(self, grad_output, (*x_shape[:2], *count.shape))
        share = (grad_output / count).ravel()                          # dy / count per window
        dcols = np.broadcast_to(share, (self.kernel_size ** 2, share.size))
        return self._fold(dcols, x_pad_shape, x_shape)


class AdaptiveAvgPool2d(Module):
    """Global average pooling: (N, C, H, W) -> (N, C, 1, 1), y = mean over H and W.

    dx = dy / (H·W) at every position. Only output_size=1 (what ResNets use) is supported.
    """

    def __init__(self, output_size=1):
        super().__init__()
        if square(self, "output_size", output_size) != 1:
            raise ValueError(f"AdaptiveAvgPool2d: only output_size=1 is supported, got {output_size}")
        self.output_size = output_size
        self.x_shape = None

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, ndim=4)
        self.x_shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        N, C, H, W = self._saved("x_shape")
        check_grad(self, grad_output, (N, C, 1, 1))
        return np.broadcast_to(grad_output / (H * W), (N, C, H, W)).copy()
