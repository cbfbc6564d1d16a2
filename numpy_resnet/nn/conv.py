"""Conv2d: convolution as im2col + one matrix product (GEMM), forward and backward.

    cols = im2col(x)                      (C_in·k·k, N·H_out·W_out)
    Y    = W_mat · cols + b               (C_out, N·H_out·W_out),  W_mat: (C_out, C_in·k·k)

and, since Y is linear in both W and cols,

    dW    = dY · colsᵀ                    dL/dW_mat
    db    = Σ_{n, h, w} dY                dL/db
    dcols = W_matᵀ · dY                   then dx = col2im(dcols)

With groups > 1 the input channels split into `groups` slices, each with its own weights:
the rows of `cols` and of W split the same way and each group is its own GEMM.

This is the reference: what the lessons teach, the gradient checks verify and a student
writes. The fast engine (numpy_resnet/engine) runs the same equations on channels-last memory
(kernels/conv_nhwc.py, kernels/winograd.py); tests check that the two agree.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from . import init
from .arguments import flag, float_dtype, positive_int, square
from .module import DEFAULT_DTYPE, Module, Parameter, check_grad, check_input


class Conv2d(Module):
    """x: (N, C_in, H, W) -> y: (N, C_out, H_out, W_out),  H_out = (H + 2p - k) // s + 1.

    weight: (C_out, C_in/groups, k, k), bias: (C_out,) or None; torch.nn.Conv2d's arguments.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 groups: int = 1, bias: bool = True, dtype=DEFAULT_DTYPE):
        super().__init__()
        self.in_channels = positive_int(self, "in_channels", in_channels)
        self.out_channels = positive_int(self, "out_channels", out_channels)
        self.kernel_size = square(self, "kernel_size", kernel_size)
        self.stride = square(self, "stride", stride)
        self.padding = square(self, "padding", padding, minimum=0)
        self.groups = positive_int(self, "groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups})")
        bias = flag(self, "bias", bias)
        dtype = float_dtype(self, dtype)
        k = self.kernel_size
        self.weight = Parameter(np.zeros((out_channels, in_channels // groups, k, k), dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype)) if bias else None
        init.default_init_(self.weight, self.bias)
        self.cache = None

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding:
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def _weight_by_group(self) -> np.ndarray:
        """W as `groups` matrices: (groups, C_out/groups, C_in/groups·k·k)."""
        return self.weight.data.reshape(self.groups, self.out_channels // self.groups, -1)

    def _output_shape(self, x_shape: tuple) -> tuple[int, int, int, int]:
        """(N, C_in, H, W) -> (N, C_out, H_out, W_out)."""
        N, _, H, W = x_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        H_out, W_out = kernels.conv_output_size(H, k, s, p), kernels.conv_output_size(W, k, s, p)
        return N, self.out_channels, H_out, W_out

    def _output_size(self, x: np.ndarray) -> tuple[int, int]:
        """Check x: (N, C_in, H, W) and return (H_out, W_out)."""
        check_input(self, x, ndim=4, channels=self.in_channels)
        _, _, H_out, W_out = self._output_shape(x.shape)
        if H_out < 1 or W_out < 1:
            raise ValueError(f"{self!r}: input {x.shape} is smaller than the kernel")
        return H_out, W_out

    def forward(self, x: np.ndarray) -> np.ndarray:
        H_out, W_out = self._output_size(x)
        N = x.shape[0]
        k, s, p = self.kernel_size, self.stride, self.padding
        cols = kernels.im2col(x, k, k, s, p)                      # (C_in·k·k, N·H_out·W_out)
        W_g = self._weight_by_group()
        cols_g = cols.reshape(self.groups, W_g.shape[2], -1)
        y = np.matmul(W_g, cols_g).reshape(self.out_channels, N, H_out, W_out)   # Y = W·cols
        y = y.transpose(1, 0, 2, 3)                                 # (N, C_out, H_out, W_out)
        if self.bias is not None:
            y = y + self.bias.data[None, :, None, None]
        self.cache = (cols_g, x.shape)
        return np.ascontiguousarray(y)

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """dY: (N, C_out, H_out, W_out) -> dx: (N, C_in, H, W); dW and db add into .grad.

        need_input_grad=False skips dx and returns None, for a layer whose input needs no
        gradient (a network's images): PyTorch's autograd skips it the same way.
        """
        cols_g, x_shape = self._saved()
        check_grad(self, grad_output, self._output_shape(x_shape))
        k, s, p = self.kernel_size, self.stride, self.padding
        # dY as a matrix per group: (groups, C_out/groups, N·H_out·W_out)
        dy = grad_output.transpose(1, 0, 2, 3).reshape(self.groups, self.out_channels // self.groups, -1)
        dW = np.matmul(dy, cols_g.transpose(0, 2, 1))               # dW = dY · colsᵀ
        self.weight.grad += dW.reshape(self.weight.data.shape)
        if self.bias is not None:
            self.bias.grad += grad_output.sum(axis=(0, 2, 3))       # db = Σ dY
        if not need_input_grad:
            return None
        dcols = np.matmul(self._weight_by_group().transpose(0, 2, 1), dy)   # dcols = Wᵀ · dY
        dcols = dcols.reshape(-1, dcols.shape[2])
        return kernels.col2im(dcols, x_shape, k, k, s, p)           # dx = col2im(dcols)
