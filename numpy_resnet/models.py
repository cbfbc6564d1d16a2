"""The model zoo: ResNet-18 ... 152, ResNeXt-50, ResNet-50-D, Res2Net and the CIFAR nets.

Table 1 of He et al. (2016), as `_make_layer` builds it (ImageNet, 224x224 input):

    stage    output    18 / 34 (BasicBlock)      50 / 101 / 152 (Bottleneck)
    conv1    112x112   7x7, 64, stride 2
    maxpool   56x56    3x3 max pool, stride 2
    layer1    56x56    [3x3, 64; 3x3, 64] x2/3    [1x1, 64; 3x3, 64; 1x1, 256] x3/3/3
    layer2    28x28    [3x3, 128] x2/4            [1x1, 128; ...; 1x1, 512] x4/4/8
    layer3    14x14    [3x3, 256] x2/6            [1x1, 256; ...; 1x1, 1024] x6/23/36
    layer4     7x7     [3x3, 512] x2/3            [1x1, 512; ...; 1x1, 2048] x3/3/3
    fc         1x1     global average pool, 1000-way fully connected

The CIFAR nets (section 4.2) have three stages of n blocks with 16, 32, 64 channels on
32x32 images: depth 6n + 2 (20, 32, 44, 56, 110, 1202).

Names, arguments and `state_dict` keys are torchvision's (timm's for resnet50d), so
weights load both ways. Every model has a plain twin (`residual=False`, "plainNN").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from .blocks import BasicBlock, Bottleneck, conv3x3
from .gated import GATED_BLOCKS
from .nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
    init,
)
from .preact import PreActBottleneck, preact_cifar_resnet, preact_resnet18
from .res2net import Bottle2neck
from .shortcuts import SHORTCUTS, make_shortcut

STEMS = ("imagenet", "cifar", "deep")
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)


def _stem_conv(stem: str, width: int) -> Module:
    """conv1: the first convolution(s), 3 -> width channels.

    imagenet  7x7 stride 2 (then a 3x3 max pool): 224 -> 56
    cifar     3x3 stride 1 and no max pool: 32 -> 32
    deep      three 3x3 convs, width/2, width/2, width (ResNet-C/D, timm's keys conv1.0 ... conv1.6)
    """
    if stem == "imagenet":
        return Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    if stem == "cifar":
        return conv3x3(3, width)
    if stem == "deep":
        half = width // 2
        return Sequential(conv3x3(3, half, stride=2), BatchNorm2d(half), ReLU(),
                          conv3x3(half, half), BatchNorm2d(half), ReLU(),
                          conv3x3(half, width))
    raise ValueError(f"ResNet: stem must be one of {STEMS}, got {stem!r}")


class ResNet(Module):
    """x: (N, 3, H, W) -> logits (N, num_classes).

    block, layers: BasicBlock or Bottleneck, and the number of blocks per stage
    ([2, 2, 2, 2] is ResNet-18; three stages make a CIFAR net). Stage i has width·2^i planes.
    groups, width_per_group: ResNeXt's cardinality and width (torchvision's names).
    stem: "imagenet", "cifar" or "deep".   width: channels after the stem (64).
    residual: False builds the plain twin.   shortcut: "A", "B" or "D" (see shortcuts.py).
    zero_init_residual: start each block's last BN at γ = 0, so that every block starts as
    y = relu(shortcut(x)).   stride_in_1x1: the paper's v1 Bottleneck.
    block_args: more keyword arguments for every block (timm's name), e.g. {"scale": 4}
    for Res2Net's Bottle2neck.
    """

    def __init__(self, block: type, layers: list[int], num_classes: int = 1000,
                 zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64, *,
                 stem: str = "imagenet", width: int = 64, residual: bool = True,
                 shortcut: str = "B", stride_in_1x1: bool = False,
                 block_args: dict | None = None):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"ResNet: shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if zero_init_residual and not residual:
            raise ValueError("ResNet: zero_init_residual needs residual=True (a plain block "
                             "with γ = 0 would output zeros)")
        self.block_kwargs = {"groups": groups, "base_width": width_per_group, "residual": residual}
        if stride_in_1x1:
            if block is not Bottleneck:
                raise ValueError("ResNet: stride_in_1x1 applies to Bottleneck blocks only")
            self.block_kwargs["stride_in_1x1"] = True
        self.block_kwargs.update(block_args or {})
        self.shortcut = shortcut
        self.inplanes = width
        self.num_stages = len(layers)

        self.conv1 = _stem_conv(stem, width)
        self.bn1 = BatchNorm2d(width)
        self.relu = ReLU()
        if stem == "cifar":
            self.maxpool = Identity()                   # keep 32x32: no max pool
        else:
            self.maxpool = MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, blocks in enumerate(layers):             # layer1 ... layer4
            stride = 1 if i == 0 else 2                 # every stage after the first halves H, W
            setattr(self, f"layer{i + 1}", self._make_layer(block, width * 2 ** i, blocks, stride))
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten()
        self.fc = Linear(self.inplanes, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> Sequential:
        """One stage: `blocks` blocks; the first may change the stride and the width."""
        outplanes = planes * block.expansion
        downsample = None
        changes_shape = stride != 1 or self.inplanes != outplanes
        if changes_shape and self.block_kwargs["residual"]:
            downsample = make_shortcut(self.shortcut, self.inplanes, outplanes, stride)
        layers = [block(self.inplanes, planes, stride, downsample, **self.block_kwargs)]
        self.inplanes = outplanes
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, **self.block_kwargs))
        return Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's: He-normal convs (fan_out), BN γ = 1 and β = 0, Linear as built."""
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BatchNorm2d):
                init.constant_(m.weight, 1)
                init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (Bottleneck, Bottle2neck)):
                    init.constant_(m.bn3.weight, 0)
                elif isinstance(m, (BasicBlock, *GATED_BLOCKS.values())):   # bn2 ends F
                    init.constant_(m.bn2.weight, 0)

    @property
    def stages(self) -> list[Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: (N, 3, H, W) -> (N, num_classes); e = block.expansion, 64 = width."""
        x = self.relu(self.bn1(self.conv1(x)))          # (N, 64, H/2, W/2); cifar: (N, 64, H, W)
        x = self.maxpool(x)                             # (N, 64, H/4, W/4); cifar: unchanged
        for stage in self.stages:                       # layer1 ... layer4
            x = stage(x)                                # ... (N, 512·e, H/32, W/32)
        x = self.avgpool(x)                             # (N, 512·e, 1, 1)
        x = self.flatten(x)                             # (N, 512·e)
        return self.fc(x)                               # (N, num_classes)

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """dL/dlogits: (N, num_classes) -> dL/dx: (N, 3, H, W); the forward in reverse.

        need_input_grad=False: the images need no gradient, so the first conv computes only
        its dW and None is returned (training does this, as PyTorch does for an input that
        does not require grad).
        """
        d = self.fc.backward(grad_output)
        d = self.flatten.backward(d)
        d = self.avgpool.backward(d)
        for stage in reversed(self.stages):             # layer4 ... layer1
            d = stage.backward(d)
        d = self.maxpool.backward(d)
        d = self.bn1.backward(self.relu.backward(d))
        if not need_input_grad:
            return self.conv1.backward(d, need_input_grad=False)
        return self.conv1.backward(d)


# ----- torchvision's constructors ---------------------------------------------------------
# keyword arguments go to ResNet: num_classes, stem, width, residual, shortcut,
# zero_init_residual, and for Bottleneck models stride_in_1x1

def resnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


def resnext50_32x4d(**kwargs) -> ResNet:
    """ResNeXt-50 (Xie et al., 2017): 32 groups of 4 channels in the first stage's 3x3."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **{"groups": 32, "width_per_group": 4, **kwargs})


def resnet50d(**kwargs) -> ResNet:
    """ResNet-50-D (He et al., 2019; timm's resnet50d): deep stem and avg-pool shortcuts."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **{"stem": "deep", "shortcut": "D", **kwargs})


def res2net50_26w_4s(**kwargs) -> ResNet:
    """Res2Net-50 (Gao et al., 2019; timm's res2net50_26w_4s): 4 groups of 26 channels."""
    return ResNet(Bottle2neck, [3, 4, 6, 3], **{"width_per_group": 26, "block_args": {"scale": 4},
                                                 **kwargs})


def res2net101_26w_4s(**kwargs) -> ResNet:
    """Res2Net-101 (timm's res2net101_26w_4s): ResNet-101's stages, 4 groups of 26 channels."""
    return ResNet(Bottle2neck, [3, 4, 23, 3], **{"width_per_group": 26, "block_args": {"scale": 4},
                                                  **kwargs})


def res2next50(**kwargs) -> ResNet:
    """Res2NeXt-50 (timm's res2next50): 4 groups, each a 3x3 of cardinality 8, 4 channels per path."""
    return ResNet(Bottle2neck, [3, 4, 6, 3], **{"groups": 8, "width_per_group": 4,
                                                 "block_args": {"scale": 4}, **kwargs})


def cifar_resnet(depth: int, shortcut: str = "A", residual: bool = True, num_classes: int = 10,
                 width: int = 16, zero_init_residual: bool = False,
                 block: type = BasicBlock) -> ResNet:
    """He et al.'s CIFAR-10 nets: depth = 6n + 2, three stages of n BasicBlocks (16, 32, 64).

    x: (N, 3, 32, 32) -> (N, num_classes). Option A shortcuts as in the paper.
    block: BasicBlock, or one of gated.py's blocks with a gated or scaled shortcut.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"cifar_resnet: depth must be 6n + 2 (20, 32, 44, 56, 110, ...), "
                         f"got {depth}")
    n = (depth - 2) // 6
    return ResNet(block, [n, n, n], num_classes=num_classes, stem="cifar", width=width,
                  residual=residual, shortcut=shortcut, zero_init_residual=zero_init_residual)


# ----- the registry -------------------------------------------------------------------------

def _registry() -> dict[str, Callable[..., ResNet]]:
    registry = {}
    for depth, constructor in [(18, resnet18), (34, resnet34), (50, resnet50),
                               (101, resnet101), (152, resnet152)]:
        registry[f"resnet{depth}"] = constructor
        registry[f"plain{depth}"] = partial(constructor, residual=False)
    registry["resnext50_32x4d"] = resnext50_32x4d
    registry["resnet50d"] = resnet50d
    registry["res2net50_26w_4s"] = res2net50_26w_4s
    registry["res2net101_26w_4s"] = res2net101_26w_4s
    registry["res2next50"] = res2next50
    for depth in CIFAR_DEPTHS:
        registry[f"resnet{depth}"] = partial(cifar_resnet, depth)
        registry[f"cifar_resnet{depth}"] = partial(cifar_resnet, depth)
        registry[f"plain{depth}"] = partial(cifar_resnet, depth, residual=False)
        for kind, block in GATED_BLOCKS.items():    # gated110, shortcutgated110, scaled110 ...
            registry[f"{kind}{depth}"] = partial(cifar_resnet, depth, block=block)
    # pre-activation nets (preact.py): y = x + F(x), nothing after the sum
    registry["preact_resnet18"] = preact_resnet18
    registry["plain_preact18"] = partial(preact_resnet18, residual=False)
    for depth in (20, 56, 110):
        registry[f"preact_resnet{depth}"] = partial(preact_cifar_resnet, depth)
        registry[f"plain_preact{depth}"] = partial(preact_cifar_resnet, depth, residual=False)
    registry["preact_resnet164"] = partial(preact_cifar_resnet, 164, block=PreActBottleneck)
    registry["plain_preact164"] = partial(preact_cifar_resnet, 164, block=PreActBottleneck,
                                          residual=False)
    return registry


_MODELS = _registry()
MODEL_NAMES = tuple(_MODELS)


def _constructor(name: str) -> Callable[..., ResNet]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    return _MODELS[name]


def is_cifar_model(name: str) -> bool:
    """True for He et al.'s CIFAR nets ("resnet56", "cifar_resnet20", "plain110",
    "preact_resnet110" ...).

    They are built by cifar_resnet() or preact_cifar_resnet(): a fixed 3x3 stem, so they
    take `shortcut` but no `stem`.
    """
    constructor = _constructor(name)
    return (isinstance(constructor, partial)
            and constructor.func in (cifar_resnet, preact_cifar_resnet))


CIFAR_MODEL_NAMES = tuple(name for name in MODEL_NAMES if is_cifar_model(name))


def get_model(name: str, **kwargs) -> ResNet:
    """Build a model by name: "resnet18", "plain34", "resnet56" (CIFAR), "resnext50_32x4d" ...

    "plainNN" is the plain twin of "resnetNN"; resnet20/32/44/56/110/1202 are the CIFAR nets.
    kwargs go to the constructor, e.g. get_model("resnet18", num_classes=10, stem="cifar").
    """
    constructor = _constructor(name)
    if name.startswith("plain") and kwargs.get("residual", False):
        raise ValueError(f"get_model: {name!r} is a plain net, it cannot take residual=True")
    return constructor(**kwargs)
