"""The layers `numpy-resnet gradcheck` checks, each on a small float64 input.

A case is (name, make_module, input_shape, train). The same list drives the test suite,
so every layer the command reports on is also tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import nn
from .blocks import BasicBlock, Bottleneck
from .gated import ExclusiveGatedBlock, ScaledBlock, ShortcutGatedBlock
from .preact import PreActBasicBlock, PreActBottleneck, preact_projection
from .res2net import Bottle2neck, Concat, Split
from .shortcuts import make_shortcut


@dataclass
class Case:
    name: str
    make: Callable[[], nn.Module]
    input_shape: tuple
    train: bool = True
    targets: int | None = None          # a loss takes integer targets in 0..targets-1

    def inputs(self, rng: np.random.Generator) -> tuple:
        x = rng.standard_normal(self.input_shape)
        if self.targets is None:
            return (x,)
        return (x, rng.integers(0, self.targets, self.input_shape[0]))


def _bn_with_random_affine() -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(3)
    bn.weight.data[:] = [0.5, -1.5, 2.0]      # γ ≠ 1 and β ≠ 0, so no term can hide
    bn.bias.data[:] = [0.1, -0.2, 0.3]
    bn.running_mean[:] = [0.2, -0.1, 0.05]
    bn.running_var[:] = [0.7, 1.3, 2.1]
    return bn


LAYER_CASES = [
    Case("Conv2d 3x3", lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 5, 6)),
    Case("Conv2d 3x3 stride 2", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 6)),
    # 16 channels: the fast path's forward is Winograd's F(2x2, 3x3) (kernels/winograd.py), an
    # odd height cuts its last row of tiles; its backward runs the same steps backwards
    Case("Conv2d 3x3 16 channels", lambda: nn.Conv2d(16, 16, 3, padding=1), (1, 16, 5, 4)),
    Case("Conv2d 1x1 no bias", lambda: nn.Conv2d(4, 3, 1, bias=False), (2, 4, 3, 5)),
    Case("Conv2d 7x7 stride 2", lambda: nn.Conv2d(2, 3, 7, stride=2, padding=3), (1, 2, 9, 8)),
    Case("Conv2d groups 2", lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 5, 5)),
    Case("BatchNorm2d", _bn_with_random_affine, (4, 3, 3, 3), train=True),
    Case("BatchNorm2d", _bn_with_random_affine, (4, 3, 3, 3), train=False),
    Case("ReLU", nn.ReLU, (2, 3, 4, 4)),
    Case("Sigmoid", nn.Sigmoid, (2, 3, 4, 4)),
    Case("MaxPool2d 3/2/1", lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 6)),
    Case("MaxPool2d 2", lambda: nn.MaxPool2d(2), (2, 2, 4, 6)),
    Case("AvgPool2d 2", lambda: nn.AvgPool2d(2), (2, 3, 4, 6)),
    Case("AvgPool2d ceil, no pad count",
         lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 2, 6, 5)),
    Case("AdaptiveAvgPool2d", lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 5)),
    Case("Flatten", nn.Flatten, (2, 3, 2, 2)),
    Case("Linear", lambda: nn.Linear(6, 4), (3, 6)),
    Case("Identity", nn.Identity, (2, 3)),
    Case("Dropout", lambda: nn.Dropout(0.3), (4, 5)),
    Case("CrossEntropyLoss", nn.CrossEntropyLoss, (5, 4), targets=4),
    Case("CrossEntropyLoss smoothing 0.1",
         lambda: nn.CrossEntropyLoss(label_smoothing=0.1), (5, 4), targets=4),
]


def _basic(inplanes, planes, stride=1, shortcut=None, residual=True) -> BasicBlock:
    downsample = make_shortcut(shortcut, inplanes, planes, stride) if shortcut else None
    return BasicBlock(inplanes, planes, stride, downsample, residual=residual)


def _bottleneck(inplanes, planes, stride=1, shortcut=None) -> Bottleneck:
    downsample = make_shortcut(shortcut, inplanes, planes * 4, stride) if shortcut else None
    return Bottleneck(inplanes, planes, stride, downsample)


def _gated(block, inplanes, planes, stride=1, shortcut=None, **kwargs):
    """A gated or scaled block of gated.py; option `shortcut` where the shape changes."""
    downsample = make_shortcut(shortcut, inplanes, planes, stride) if shortcut else None
    return block(inplanes, planes, stride, downsample, **kwargs)


def _preact(block, inplanes, planes, stride=1, residual=True):
    """A pre-activation block, with the 1x1 projection when it changes the shape."""
    outplanes = planes * block.expansion
    downsample = None
    if residual and (stride != 1 or inplanes != outplanes):
        downsample = preact_projection(inplanes, outplanes, stride)
    return block(inplanes, planes, stride, downsample, residual=residual)


class _StackedSplit(nn.Module):
    """Split into k equal groups, its outputs stacked: (N, k·C, H, W) -> (k, N, C, H, W).

    gradcheck takes one array in and one out; stacking is only the checker's view of the list.
    """

    def __init__(self, k: int, channels: int):
        super().__init__()
        self.split = Split([channels] * k)

    def forward(self, x):
        return np.stack(self.split(x))

    def backward(self, grad_output):
        return self.split.backward(list(grad_output))


class _StackedConcat(nn.Module):
    """Concat of k equal parts handed in stacked: (k, N, C, H, W) -> (N, k·C, H, W)."""

    def __init__(self):
        super().__init__()
        self.concat = Concat()

    def forward(self, x):
        return self.concat(list(x))

    def backward(self, grad_output):
        return np.stack(self.concat.backward(grad_output))


def _bottle2neck(inplanes, planes, stride=1, shortcut=None, groups=1, base_width=32, scale=3):
    """A small Res2Net block: width int(planes · base_width / 64) · groups per group."""
    downsample = make_shortcut(shortcut, inplanes, planes * 4, stride) if shortcut else None
    return Bottle2neck(inplanes, planes, stride, downsample, groups, base_width, scale=scale)


BLOCK_CASES = [
    Case("BasicBlock identity", lambda: _basic(4, 4), (2, 4, 4, 4)),
    Case("BasicBlock shortcut A", lambda: _basic(3, 6, 2, "A"), (2, 3, 6, 6)),
    Case("BasicBlock shortcut B", lambda: _basic(3, 6, 2, "B"), (2, 3, 6, 6)),
    Case("BasicBlock shortcut D", lambda: _basic(3, 6, 2, "D"), (2, 3, 6, 6)),
    Case("BasicBlock plain", lambda: _basic(3, 6, 2, residual=False), (2, 3, 6, 6)),
    Case("Bottleneck shortcut B", lambda: _bottleneck(4, 2, 2, "B"), (2, 4, 6, 6)),
    Case("Split 3 groups", lambda: _StackedSplit(3, 2), (2, 6, 3, 4)),
    Case("Concat 3 parts", _StackedConcat, (3, 2, 2, 3, 4)),
    # Res2Net: a normal block (each 3x3 also takes the previous group's output, the last group
    # passes through) and a stage's first block (own groups only, the last one average-pooled)
    Case("Bottle2neck normal", lambda: _bottle2neck(16, 4), (2, 16, 4, 4)),
    Case("Bottle2neck stage stride 2 shortcut B", lambda: _bottle2neck(4, 4, 2, "B"), (2, 4, 5, 5)),
    Case("Bottle2neck stage stride 1 shortcut B", lambda: _bottle2neck(8, 4, 1, "B"), (2, 8, 4, 4)),
    Case("Bottle2neck Res2NeXt groups 2", lambda: _bottle2neck(16, 4, groups=2, base_width=16),
         (2, 16, 4, 4)),
    Case("PreActBasicBlock identity", lambda: _preact(PreActBasicBlock, 4, 4), (2, 4, 4, 4)),
    Case("PreActBasicBlock projection",
         lambda: _preact(PreActBasicBlock, 3, 6, 2), (2, 3, 6, 6)),
    Case("PreActBasicBlock plain",
         lambda: _preact(PreActBasicBlock, 3, 6, 2, residual=False), (2, 3, 6, 6)),
    Case("PreActBottleneck identity", lambda: _preact(PreActBottleneck, 8, 2), (2, 8, 4, 4)),
    Case("PreActBottleneck projection",
         lambda: _preact(PreActBottleneck, 4, 2, 2), (2, 4, 6, 6)),
    Case("PreActBottleneck plain",
         lambda: _preact(PreActBottleneck, 4, 2, 2, residual=False), (2, 4, 6, 6)),
    # b_g = 0 (g ≈ 0.5) rather than the models' −6 (g ≈ 0.0025), so that no path is negligible
    Case("ExclusiveGatedBlock identity",
         lambda: _gated(ExclusiveGatedBlock, 4, 4, gate_bias=0.0), (2, 4, 4, 4)),
    Case("ExclusiveGatedBlock shortcut A",
         lambda: _gated(ExclusiveGatedBlock, 3, 6, 2, "A", gate_bias=0.0), (2, 3, 6, 6)),
    Case("ExclusiveGatedBlock shortcut B",
         lambda: _gated(ExclusiveGatedBlock, 3, 6, 2, "B", gate_bias=0.0), (2, 3, 6, 6)),
    Case("ShortcutGatedBlock identity",
         lambda: _gated(ShortcutGatedBlock, 4, 4, gate_bias=0.0), (2, 4, 4, 4)),
    Case("ShortcutGatedBlock shortcut A",
         lambda: _gated(ShortcutGatedBlock, 3, 6, 2, "A", gate_bias=0.0), (2, 3, 6, 6)),
    Case("ShortcutGatedBlock shortcut B",
         lambda: _gated(ShortcutGatedBlock, 3, 6, 2, "B", gate_bias=0.0), (2, 3, 6, 6)),
    Case("ScaledBlock identity", lambda: _gated(ScaledBlock, 4, 4), (2, 4, 4, 4)),
    Case("ScaledBlock shortcut A", lambda: _gated(ScaledBlock, 3, 6, 2, "A"), (2, 3, 6, 6)),
    Case("ScaledBlock F unscaled, shortcut B",
         lambda: _gated(ScaledBlock, 3, 6, 2, "B", branch_scale=1.0), (2, 3, 6, 6)),
]


def all_cases() -> list[Case]:
    """Every layer, then every kind of residual block (small shapes, float64)."""
    return LAYER_CASES + BLOCK_CASES
