"""Res2Net (Gao et al., 2019): a bottleneck whose 3x3 sees several scales at once.

Bottle2neck replaces the Bottleneck's single 3x3 with a ladder of small ones. The first 1x1
gives `scale` groups of `width` channels, x_1 ... x_s; each group but the last has its own
3x3 K_i (conv, BN, ReLU), and each one also takes the previous group's output:

    y_1 = K_1(x_1),   y_i = K_i(x_i + y_{i-1})   (1 < i < s),   y_s = x_s

so y_i has seen i stacked 3x3s: receptive fields of 3, 5, 7, ... inside one block. In a
stage's first block (timm's `is_first`, the paper code's stype='stage': the stride or the
width changes there) every K_i takes only its own x_i, and x_s goes through a 3x3 average
pool with the block's stride, so that all groups reach the new size. Then

    F(x) = bn3(conv3(concat(y_1, ..., y_s)))      out = relu(F(x) + shortcut(x))

Backward reads the same ladder from the top: the concatenation hands each y_i its slice of
the gradient, and in a normal block y_{i-1} fed K_i's input, so it also receives the
gradient of that input:  dL/dy_{i-1} = (slice i-1) + dL/d(x_i + y_{i-1}).

The split and the concatenation are layers (Split, Concat): each is the other's backward.
Names and `state_dict` keys are timm's (timm/models/res2net.py): conv1, bn1, convs.0,
bns.0, ..., conv3, bn3, downsample.0/1, so the pretrained weights load as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from .blocks import conv1x1, conv3x3, shortcut, shortcut_backward
from .nn import AvgPool2d, BatchNorm2d, Module, ReLU
from .nn.module import ModuleList, check_grad, check_input


def _sections(sections) -> tuple[int, ...]:
    """Split's argument: a non-empty list of positive channel counts."""
    sections = tuple(sections)
    if not sections or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                               for c in sections):
        raise ValueError(f"Split: sections must be positive ints, got {sections}")
    return sections


class Split(Module):
    """Cut the channels into consecutive groups.

    x: (N, C_1 + ... + C_k, H, W) -> [x_1: (N, C_1, H, W), ..., x_k: (N, C_k, H, W)]
    Each x_i is a slice of x, so its gradient goes back to the same channels:
        dL/dx = concat(dL/dx_1, ..., dL/dx_k)      (Concat's forward)
    """

    def __init__(self, sections: Iterable[int]):
        super().__init__()
        self.sections = _sections(sections)
        self.x_shape = None

    def extra_repr(self) -> str:
        return f"sections={list(self.sections)}"

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        check_input(self, x, ndim=4, channels=sum(self.sections))
        self.x_shape = x.shape
        bounds = np.cumsum(self.sections)[:-1]          # where one group ends, the next starts
        return np.split(x, bounds, axis=1)

    def backward(self, grad_outputs: list[np.ndarray]) -> np.ndarray:
        N, _, H, W = self._saved("x_shape")
        if len(grad_outputs) != len(self.sections):
            raise ValueError(f"{self!r}: backward expected {len(self.sections)} gradients, "
                             f"one per output, got {len(grad_outputs)}")
        for d, channels in zip(grad_outputs, self.sections, strict=True):
            check_grad(self, d, (N, channels, H, W))
        return np.concatenate(grad_outputs, axis=1)     # dL/dx = [dL/dx_1, ..., dL/dx_k]


class Concat(Module):
    """Join arrays along the channels.

    [x_1: (N, C_1, H, W), ..., x_k: (N, C_k, H, W)] -> y: (N, C_1 + ... + C_k, H, W)
    Each x_i became a slice of y, so its gradient is that slice:
        dL/dx_i = dL/dy[:, C_1 + ... + C_{i-1} : C_1 + ... + C_i]      (Split's forward)
    """

    def __init__(self):
        super().__init__()
        self.sections = None
        self.out_shape = None

    def forward(self, parts: list[np.ndarray]) -> np.ndarray:
        parts = list(parts)
        if not parts:
            raise ValueError(f"{self!r}: expected a list of arrays to join, got an empty one")
        for x in parts:
            check_input(self, x, ndim=4)
            if x.shape[0] != parts[0].shape[0] or x.shape[2:] != parts[0].shape[2:]:
                raise ValueError(f"{self!r}: every part must have the same N, H and W, got "
                                 f"{[p.shape for p in parts]}")
        self.sections = [x.shape[1] for x in parts]
        y = np.concatenate(parts, axis=1)
        self.out_shape = y.shape
        return y

    def backward(self, grad_output: np.ndarray) -> list[np.ndarray]:
        check_grad(self, grad_output, self._saved("out_shape"))
        bounds = np.cumsum(self.sections)[:-1]
        return np.split(grad_output, bounds, axis=1)    # each part's slice of dL/dy


class Bottle2neck(Module):
    """Res2Net's bottleneck (timm's Bottle2neck): 1x1 -> a ladder of 3x3s over `scale` groups -> 1x1.

    x: (N, inplanes, H, W) -> y: (N, 4·planes, H/stride, W/stride)
    width = int(planes · base_width / 64) · groups channels per group (26 for the first stage
    of res2net50_26w_4s; Res2NeXt's 3x3s are grouped convolutions, `groups` = cardinality).
    The stride sits on the 3x3s (and the pool); a stage's first block is the one with a
    stride or a downsample module.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 26, *,
                 scale: int = 4, residual: bool = True):
        super().__init__()
        if not residual:
            raise ValueError("Bottle2neck: has no plain twin (residual=False); its stage's first "
                             "block is told apart by its downsample module")
        if not isinstance(scale, int) or scale < 2:
            raise ValueError(f"Bottle2neck: scale must be an int >= 2 (one 3x3 group and the "
                             f"group that passes through), got {scale!r}")
        width = int(planes * (base_width / 64.0)) * groups
        if width < 1:
            raise ValueError(f"Bottle2neck: width int({planes} * {base_width} / 64) * {groups} "
                             f"is 0; use more planes or a larger base_width")
        self.scale = scale
        self.width = width
        self.stage_first = stride > 1 or downsample is not None     # timm's is_first
        self.conv1 = conv1x1(inplanes, width * scale)
        self.bn1 = BatchNorm2d(width * scale)
        self.relu1 = ReLU()
        self.split = Split([width] * scale)
        self.convs = ModuleList(conv3x3(width, width, stride, groups) for _ in range(scale - 1))
        self.bns = ModuleList(BatchNorm2d(width) for _ in range(scale - 1))
        self.relus = ModuleList(ReLU() for _ in range(scale - 1))
        if self.stage_first:
            # count_include_pad as timm (PyTorch's default), which the pretrained weights expect
            self.pool = AvgPool2d(kernel_size=3, stride=stride, padding=1)
        self.concat = Concat()
        self.conv3 = conv1x1(width * scale, planes * self.expansion)
        self.bn3 = BatchNorm2d(planes * self.expansion)
        self.downsample = downsample            # None: the identity shortcut
        self.relu3 = ReLU()
        self.stride = stride
        self.residual = True

    def extra_repr(self) -> str:
        return f"scale={self.scale}, width={self.width}" + (", stage" if self.stage_first else "")

    def _ladder(self) -> Iterator[tuple[int, Module, Module, Module]]:
        return zip(range(self.scale - 1), self.convs, self.bns, self.relus, strict=True)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self.relu1(self.bn1(self.conv1(x)))           # 1x1: (N, scale·width, H, W)
        xs = self.split(out)                                # x_1 ... x_s: (N, width, H, W) each
        ys = []
        for i, conv, bn, relu in self._ladder():
            if i == 0 or self.stage_first:
                inp = xs[i]                                 # K_i sees its own group only
            else:
                inp = xs[i] + ys[-1]                        # x_i + y_{i-1}
            ys.append(relu(bn(conv(inp))))                  # y_i = K_i(...), 3x3 with the stride
        ys.append(self.pool(xs[-1]) if self.stage_first else xs[-1])   # y_s
        out = self.bn3(self.conv3(self.concat(ys)))         # 1x1: expand to 4·planes; F(x)
        out = out + shortcut(self, x, out.shape)            # F(x) + shortcut(x)
        return self.relu3(out)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        d_out = self.relu3.backward(grad_output)            # dL/d(F(x) + shortcut(x))
        d_ys = self.concat.backward(self.conv3.backward(self.bn3.backward(d_out)))
        d_xs = [None] * self.scale
        d_xs[-1] = self.pool.backward(d_ys[-1]) if self.stage_first else d_ys[-1]
        d_next = None                   # dL/d(x_{i+1} + y_i): K_{i+1}'s input, which y_i fed
        for i, conv, bn, relu in reversed(list(self._ladder())):
            d_y = d_ys[i] if d_next is None else d_ys[i] + d_next
            d_in = conv.backward(bn.backward(relu.backward(d_y)))     # dL/d(K_i's input)
            d_xs[i] = d_in                                  # x_i fed K_i's input as it is
            d_next = None if i == 0 or self.stage_first else d_in     # and so did y_{i-1}
        d = self.split.backward(d_xs)                       # dL/d(relu1's output)
        dx_residual = self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))   # through F
        dx_shortcut = shortcut_backward(self, d_out)        # through the shortcut
        return dx_residual + dx_shortcut                    # x fed both paths: gradients add
