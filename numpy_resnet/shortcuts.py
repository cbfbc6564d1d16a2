"""Shortcuts: what a residual block adds to its branch, y = relu(F(x) + shortcut(x)).

When F keeps the shape, the shortcut is the identity (nothing to build: `downsample=None`).
When F halves H and W and widens the channels, x must be brought to F's shape. He et al.
(2016) compare three options, and He et al. (2019, "Bag of Tricks") add a fourth:

    A  ZeroPadShortcut      subsample x[:, :, ::2, ::2], pad the new channels with zeros
                            (no parameters; the paper's CIFAR nets)
    B  projection           1x1 conv with stride s, then BatchNorm (torchvision's choice)
    D  avg-pool projection  2x2 average pool with stride s, then 1x1 conv stride 1 and BN
                            (ResNet-D: the 1x1 conv no longer skips 3/4 of the pixels)

A module built here goes in a block's `downsample` slot, as in torchvision, so the keys are
`layer2.0.downsample.0.weight`, `layer2.0.downsample.1.running_mean`, ...
"""

from __future__ import annotations

import numpy as np

from .nn import AvgPool2d, BatchNorm2d, Conv2d, Identity, Module, Sequential
from .nn.module import check_input

SHORTCUTS = ("A", "B", "D")


class ZeroPadShortcut(Module):
    """Option A: identity on the first C_in channels, zeros on the rest.

    x: (N, C_in, H, W) -> y: (N, C_out, ceil(H/s), ceil(W/s)),  C_out >= C_in
        y[:, :C_in] = x[:, :, ::s, ::s],   y[:, C_in:] = 0
    The adjoint keeps the gradient of the first C_in channels and puts it back on the
    pixels the subsampling kept:
        dx = 0,   dx[:, :, ::s, ::s] = dy[:, :C_in]
    (Zeros go after the input channels, as in the original Torch code; some PyTorch ports
    pad half before and half after, which changes no count but does change the function.)
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"ZeroPadShortcut: out_channels ({out_channels}) must be at least "
                             f"in_channels ({in_channels})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.x_shape = None

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, ndim=4, channels=self.in_channels)
        s = self.stride
        kept = x[:, :, ::s, ::s]                                   # (N, C_in, H_out, W_out)
        N, _, H_out, W_out = kept.shape
        # zeros in x's memory order (channels-last stays channels-last, as the fast path's
        # layers pass their outputs), so that the block's sum and the next conv need no copy
        y = np.zeros_like(kept, shape=(N, self.out_channels, H_out, W_out))
        y[:, :self.in_channels] = kept                             # the padding stays zero
        self.x_shape = x.shape
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        x_shape = self._saved("x_shape")
        s = self.stride
        dx = np.zeros(x_shape, dtype=grad_output.dtype)
        dx[:, :, ::s, ::s] = grad_output[:, :self.in_channels]     # zero channels: no gradient
        return dx


def projection(in_channels: int, out_channels: int, stride: int) -> Sequential:
    """Option B: W_s x, a strided 1x1 convolution and BatchNorm.  Keys: 0.weight, 1.*"""
    return Sequential(
        Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        BatchNorm2d(out_channels),
    )


def avg_pool_projection(in_channels: int, out_channels: int, stride: int) -> Sequential:
    """Option D (ResNet-D, timm's `downsample_avg`): average 2x2, then a 1x1 conv and BN.

    Keys as in timm: 0 is the pool (an Identity when stride is 1), 1.weight, 2.*
    """
    if stride == 1:
        pool = Identity()
    else:
        pool = AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
    return Sequential(
        pool,
        Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=False),
        BatchNorm2d(out_channels),
    )


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> Module:
    """The `downsample` module of option `kind` ("A", "B" or "D")."""
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind == "B":
        return projection(in_channels, out_channels, stride)
    if kind == "D":
        return avg_pool_projection(in_channels, out_channels, stride)
    raise ValueError(f"make_shortcut: expected one of {SHORTCUTS}, got {kind!r}")
