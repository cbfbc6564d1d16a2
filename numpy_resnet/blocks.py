"""The residual blocks of He et al. (2016): BasicBlock and Bottleneck.

A block computes  y = relu(F(x) + shortcut(x)):  F is a small stack of conv-BN-ReLU, the
shortcut is x itself (or `downsample(x)` when F changes the shape; see shortcuts.py).
Backward is where the residual idea shows: x feeds two paths, so its gradient is the sum

    dL/dx = dL/dx through F  +  dL/dx through the shortcut
          = F'ᵀ(d)           +  d        (identity shortcut; d = the gradient at the sum)

and the second term carries d to x unchanged, however badly F's Jacobian behaves.

`residual=False` builds the plain twin: the same layers without the addition (and without
a downsample module); the paper's "plain" networks, for comparing the two.
Arguments and attribute names are torchvision's, so the `state_dict` keys are too; each
use of a ReLU is its own instance (relu1, relu2, ...), since our layers keep their cache.
This is the reference; the fast engine (numpy_resnet/engine) runs the same block with
conv -> BN -> ReLU and the sum computed in fewer passes over memory, and tests check that
the two agree.
"""

from __future__ import annotations

import numpy as np

from .nn import BatchNorm2d, Conv2d, Module, ReLU


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> Conv2d:
    """3x3 convolution, padding 1, no bias (BatchNorm follows)."""
    return Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1,
                  groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    """1x1 convolution, no bias."""
    return Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _check_downsample(block: Module, downsample: Module | None, residual: bool) -> None:
    if downsample is not None and not residual:
        raise ValueError(f"{type(block).__name__}: a plain block (residual=False) has no "
                         f"shortcut, so it takes no downsample module")


def shortcut(block: Module, x: np.ndarray, out_shape: tuple) -> np.ndarray:
    """x itself, or downsample(x) when the block changes the shape; it must match F(x)."""
    s = x if block.downsample is None else block.downsample(x)
    if s.shape != tuple(out_shape):
        raise ValueError(f"{type(block).__name__}: the shortcut gives {s.shape} but the "
                         f"branch F(x) gives {tuple(out_shape)}; pass a downsample module")
    return s


def shortcut_backward(block: Module, d_out: np.ndarray) -> np.ndarray:
    """Gradient through the shortcut: unchanged through the identity, else its backward."""
    return d_out if block.downsample is None else block.downsample.backward(d_out)


class BasicBlock(Module):
    """Two 3x3 convolutions (ResNet-18/34, the CIFAR nets).

    x: (N, inplanes, H, W) -> y: (N, planes, H/stride, W/stride)
        F(x) = bn2(conv2(relu1(bn1(conv1(x)))))        y = relu2(F(x) + shortcut(x))
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64, *,
                 residual: bool = True):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        _check_downsample(self, downsample, residual)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = downsample            # None: the identity shortcut
        self.relu2 = ReLU()
        self.stride = stride
        self.residual = residual

    def extra_repr(self) -> str:
        return "" if self.residual else "residual=False"

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))                     # F(x)
        if self.residual:
            out = out + shortcut(self, x, out.shape)        # F(x) + shortcut(x)
        return self.relu2(out)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        d_out = self.relu2.backward(grad_output)            # dL/d(F(x) + shortcut(x))
        d = self.conv2.backward(self.bn2.backward(d_out))
        dx_residual = self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))   # through F
        if not self.residual:
            return dx_residual                              # plain twin: F is the only path
        dx_shortcut = shortcut_backward(self, d_out)        # through the shortcut
        return dx_residual + dx_shortcut                    # x fed both paths: gradients add


class Bottleneck(Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand by 4) (ResNet-50/101/152, ResNeXt).

    x: (N, inplanes, H, W) -> y: (N, 4·planes, H/stride, W/stride)
        F(x) = bn3(conv3(relu2(bn2(conv2(relu1(bn1(conv1(x))))))))   y = relu3(F(x) + shortcut(x))
    The inner width is int(planes · base_width / 64) · groups, as torchvision computes it:
    planes for ResNet, 4·32 = 128 in the first stage of ResNeXt-50 32x4d (a grouped 3x3).
    The stride sits on the 3x3 (torchvision's "ResNet v1.5"); stride_in_1x1=True puts it on
    the first 1x1 as in the paper (v1), which skips 3/4 of the pixels and costs less.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64, *,
                 residual: bool = True, stride_in_1x1: bool = False):
        super().__init__()
        _check_downsample(self, downsample, residual)
        width = int(planes * (base_width / 64.0)) * groups
        if width < 1:
            raise ValueError(f"Bottleneck: inner width int({planes} * {base_width} / 64) * "
                             f"{groups} is 0; use more planes or a larger base_width")
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, stride_1x1)
        self.bn1 = BatchNorm2d(width)
        self.relu1 = ReLU()
        self.conv2 = conv3x3(width, width, stride_3x3, groups)
        self.bn2 = BatchNorm2d(width)
        self.relu2 = ReLU()
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = BatchNorm2d(planes * self.expansion)
        self.downsample = downsample            # None: the identity shortcut
        self.relu3 = ReLU()
        self.stride = stride
        self.residual = residual

    def extra_repr(self) -> str:
        return "" if self.residual else "residual=False"

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self.relu1(self.bn1(self.conv1(x)))           # 1x1: reduce to `width`
        out = self.relu2(self.bn2(self.conv2(out)))         # 3x3 (grouped for ResNeXt)
        out = self.bn3(self.conv3(out))                     # 1x1: expand to 4·planes; F(x)
        if self.residual:
            out = out + shortcut(self, x, out.shape)        # F(x) + shortcut(x)
        return self.relu3(out)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        d_out = self.relu3.backward(grad_output)            # dL/d(F(x) + shortcut(x))
        d = self.conv3.backward(self.bn3.backward(d_out))
        d = self.conv2.backward(self.bn2.backward(self.relu2.backward(d)))
        dx_residual = self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))   # through F
        if not self.residual:
            return dx_residual                              # plain twin: F is the only path
        dx_shortcut = shortcut_backward(self, d_out)        # through the shortcut
        return dx_residual + dx_shortcut                    # x fed both paths: gradients add
