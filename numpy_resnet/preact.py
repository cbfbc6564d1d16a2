"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

The original block computes y = relu(F(x) + x): a ReLU sits on the path after every sum.
The pre-activation block moves BN and ReLU in front of each convolution and leaves the sum
bare,

    y = x + F(x),      F(x) = conv2(relu2(bn2(conv1(relu1(bn1(x))))))

so that, block after block, x_L = x_l + Σ_{i=l}^{L-1} F(x_i), and in backward

    dL/dx_l = dL/dx_L · (1 + ∂/∂x_l Σ F(x_i)):

the gradient at the top arrives at every block's input unchanged, through nothing but sums.
Where a block changes the shape (a stage's first block), the shortcut is a 1x1 convolution
with stride s and no BN, and it reads the block's pre-activation relu1(bn1(x)) rather than
x, as in the paper's code:  y = conv1x1(relu1(bn1(x))) + F(x).
`residual=False` builds the plain twin, y = F(x), without the shortcut.

The models have the CIFAR stem (one 3x3 conv, no BN, no max pool: the first block's BN-ReLU
follows it) and a final BN-ReLU before the pooling, since the last block's sum is not
normalised. state_dict keys follow bearpaw/pytorch-classification (models/cifar/preresnet.py):
conv1, layer1.0.bn1, layer1.0.conv1, layer1.0.bn2, layer1.0.conv2, layer2.0.downsample.0,
bn, fc. kuangliu/pytorch-cifar's PreActResNet18 names the same layers, except that its
`layerN.0.shortcut.0` is our `layerN.0.downsample.0`, its `linear` our `fc`, and it has no
final `bn` (11,171,146 parameters for 10 classes; ours 11,172,170). The paper's Torch code
puts the stem's BN-ReLU in the stem instead of the first block: the same count.
"""

from __future__ import annotations

import numpy as np

from .blocks import _check_downsample, conv1x1, conv3x3, shortcut, shortcut_backward
from .nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    Module,
    ReLU,
    Sequential,
    init,
)


def preact_projection(in_channels: int, out_channels: int, stride: int) -> Sequential:
    """The pre-activation block's projection: a strided 1x1 conv, no BN.  Key: 0.weight"""
    return Sequential(conv1x1(in_channels, out_channels, stride))


def _shortcut_source(block: Module, x: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """An identity shortcut carries x; a projection reads the pre-activation relu1(bn1(x))."""
    return x if block.downsample is None else pre


class PreActBasicBlock(Module):
    """BN-ReLU-conv3x3, twice, and a bare sum (the CIFAR nets, PreAct-ResNet-18).

    x: (N, inplanes, H, W) -> y: (N, planes, H/stride, W/stride)
        pre = relu1(bn1(x))     F(x) = conv2(relu2(bn2(conv1(pre))))
        y = x + F(x)  (identity),   y = downsample(pre) + F(x)  (projection)
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, *, residual: bool = True):
        super().__init__()
        _check_downsample(self, downsample, residual)
        self.bn1 = BatchNorm2d(inplanes)
        self.relu1 = ReLU()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = BatchNorm2d(planes)
        self.relu2 = ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample            # None: the identity shortcut
        self.stride = stride
        self.residual = residual

    def extra_repr(self) -> str:
        return "" if self.residual else "residual=False"

    def forward(self, x: np.ndarray) -> np.ndarray:
        pre = self.relu1(self.bn1(x))                       # the pre-activation
        out = self.conv1(pre)
        out = self.conv2(self.relu2(self.bn2(out)))         # F(x)
        if self.residual:                                   # y = shortcut + F(x): nothing after
            out = out + shortcut(self, _shortcut_source(self, x, pre), out.shape)
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        # no layer after the sum: dL/dF = dL/d(shortcut) = dL/dy
        d = self.conv2.backward(grad_output)
        d_pre = self.conv1.backward(self.bn2.backward(self.relu2.backward(d)))  # through F
        if self.residual and self.downsample is not None:
            d_pre = d_pre + shortcut_backward(self, grad_output)    # the projection read pre too
        dx = self.bn1.backward(self.relu1.backward(d_pre))
        if self.residual and self.downsample is None:
            dx = dx + grad_output                           # identity: dL/dy reaches x unchanged
        return dx


class PreActBottleneck(Module):
    """BN-ReLU-conv1x1 (reduce), BN-ReLU-conv3x3, BN-ReLU-conv1x1 (expand by 4), a bare sum.

    x: (N, inplanes, H, W) -> y: (N, 4·planes, H/stride, W/stride)
        pre = relu1(bn1(x))
        F(x) = conv3(relu3(bn3(conv2(relu2(bn2(conv1(pre)))))))
        y = x + F(x)  (identity),   y = downsample(pre) + F(x)  (projection)
    The stride sits on the 3x3, as in the paper's code (and torchvision's v1.5).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, *, residual: bool = True):
        super().__init__()
        _check_downsample(self, downsample, residual)
        self.bn1 = BatchNorm2d(inplanes)
        self.relu1 = ReLU()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.relu2 = ReLU()
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = BatchNorm2d(planes)
        self.relu3 = ReLU()
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.downsample = downsample            # None: the identity shortcut
        self.stride = stride
        self.residual = residual

    def extra_repr(self) -> str:
        return "" if self.residual else "residual=False"

    def forward(self, x: np.ndarray) -> np.ndarray:
        pre = self.relu1(self.bn1(x))                       # the pre-activation
        out = self.conv1(pre)                               # 1x1: reduce to `planes`
        out = self.conv2(self.relu2(self.bn2(out)))         # 3x3, stride s
        out = self.conv3(self.relu3(self.bn3(out)))         # 1x1: expand to 4·planes; F(x)
        if self.residual:                                   # y = shortcut + F(x): nothing after
            out = out + shortcut(self, _shortcut_source(self, x, pre), out.shape)
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        # no layer after the sum: dL/dF = dL/d(shortcut) = dL/dy
        d = self.conv3.backward(grad_output)
        d = self.conv2.backward(self.bn3.backward(self.relu3.backward(d)))
        d_pre = self.conv1.backward(self.bn2.backward(self.relu2.backward(d)))  # through F
        if self.residual and self.downsample is not None:
            d_pre = d_pre + shortcut_backward(self, grad_output)    # the projection read pre too
        dx = self.bn1.backward(self.relu1.backward(d_pre))
        if self.residual and self.downsample is None:
            dx = dx + grad_output                           # identity: dL/dy reaches x unchanged
        return dx


class PreActResNet(Module):
    """x: (N, 3, H, W) -> logits (N, num_classes); a CIFAR stem, so 32x32 stays 32x32.

    block, layers: PreActBasicBlock or PreActBottleneck, and the blocks per stage. Stage i
    has width·2^i planes. residual: False builds the plain twin. stem: "cifar" only (the
    argument is there because training passes it to every non-CIFAR-table net).
    """

    def __init__(self, block: type, layers: list[int], num_classes: int = 10, *,
                 width: int = 64, residual: bool = True, stem: str = "cifar"):
        super().__init__()
        if stem != "cifar":
            raise ValueError(f"PreActResNet: only the CIFAR stem (one 3x3 conv) is built, "
                             f"got stem={stem!r}")
        self.residual = residual
        self.inplanes = width
        self.num_stages = len(layers)

        self.conv1 = conv3x3(3, width)                  # no BN-ReLU: the first block begins with one
        for i, blocks in enumerate(layers):             # layer1 ... layerK
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", self._make_layer(block, width * 2 ** i, blocks, stride))
        self.bn = BatchNorm2d(self.inplanes)            # the last sum is not normalised: BN-ReLU
        self.relu = ReLU()
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten()
        self.fc = Linear(self.inplanes, num_classes)
        self._init_weights()

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int) -> Sequential:
        """One stage: `blocks` blocks; the first may change the stride and the width."""
        outplanes = planes * block.expansion
        downsample = None
        if (stride != 1 or self.inplanes != outplanes) and self.residual:
            downsample = preact_projection(self.inplanes, outplanes, stride)
        layers = [block(self.inplanes, planes, stride, downsample, residual=self.residual)]
        self.inplanes = outplanes
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, residual=self.residual))
        return Sequential(*layers)

    def _init_weights(self) -> None:
        """As the ResNets: He-normal convs (fan_out), BN γ = 1 and β = 0, Linear as built."""
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BatchNorm2d):
                init.constant_(m.weight, 1)
                init.constant_(m.bias, 0)

    @property
    def stages(self) -> list[Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: (N, 3, H, W) -> (N, num_classes); C = the last stage's channels."""
        x = self.conv1(x)                               # (N, width, H, W)
        for stage in self.stages:                       # layer1 ... layerK
            x = stage(x)                                # ... (N, C, H/2^(K-1), W/2^(K-1))
        x = self.relu(self.bn(x))                       # the final BN-ReLU
        x = self.avgpool(x)                             # (N, C, 1, 1)
        x = self.flatten(x)                             # (N, C)
        return self.fc(x)                               # (N, num_classes)

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """dL/dlogits: (N, num_classes) -> dL/dx: (N, 3, H, W); the forward in reverse.

        need_input_grad=False: only the first conv's dW, and None is returned (as ResNet).
        """
        d = self.fc.backward(grad_output)
        d = self.flatten.backward(d)
        d = self.avgpool.backward(d)
        d = self.bn.backward(self.relu.backward(d))
        for stage in reversed(self.stages):             # layerK ... layer1
            d = stage.backward(d)                       # each sum passes d on whole
        if not need_input_grad:
            return self.conv1.backward(d, need_input_grad=False)
        return self.conv1.backward(d)


# ----- constructors (models.py registers them) ----------------------------------------------

def preact_resnet18(**kwargs) -> PreActResNet:
    """PreAct-ResNet-18 for CIFAR: four stages [2, 2, 2, 2] of 64 ... 512 channels."""
    return PreActResNet(PreActBasicBlock, [2, 2, 2, 2], **kwargs)


def preact_cifar_resnet(depth: int, residual: bool = True, num_classes: int = 10,
                        width: int = 16, shortcut: str = "B",
                        block: type = PreActBasicBlock) -> PreActResNet:
    """The paper's CIFAR nets: three stages of n blocks, 16, 32, 64 planes.

    PreActBasicBlock: depth = 6n + 2 (20, 56, 110); PreActBottleneck: depth = 9n + 2 (164:
    n = 18, outputs 64, 128, 256). shortcut: "B" only, the 1x1 projection (no BN) where the
    shape changes; it is an argument because training passes one to every CIFAR net.
    """
    if shortcut != "B":
        raise ValueError(f"preact_cifar_resnet: pre-activation nets take shortcut 'B' (a 1x1 "
                         f"projection, as in the paper), got {shortcut!r}")
    convs = 2 if block is PreActBasicBlock else 3
    if depth < 3 * convs + 2 or (depth - 2) % (3 * convs):
        raise ValueError(f"preact_cifar_resnet: depth must be {3 * convs}n + 2 for "
                         f"{block.__name__}, got {depth}")
    n = (depth - 2) // (3 * convs)
    return PreActResNet(block, [n, n, n], num_classes=num_classes, width=width,
                        residual=residual)
