"""The fast twins of BasicBlock, Bottleneck and ResNet: the same layers, fused where they can be.

A block's forward in blocks.py is relu(F(x) + shortcut(x)), each F a chain of conv -> BN ->
ReLU. Its twin runs each chain as one fused pass (fused.py) and folds the sum and the last
ReLU into the last BatchNorm's pass, z = max(bn(y) + shortcut(x), 0); its backward is the
block's chain rule with each BN-after-ReLU backward fused. The ResNet's twin fuses the stem,
relu(bn1(conv1(x))), the same way; everything else it calls as the model does.

When a block cannot fuse (a layer overridden or hooked, a grouped conv, another mode), the
twin declines and the block's own code runs, each layer then taking its own twin.
"""

from __future__ import annotations

import numpy as np

from ..blocks import BasicBlock, Bottleneck, shortcut, shortcut_backward
from ..models import ResNet
from ..nn import Conv2d
from .dispatch import records, twin
from .fused import bn_relu_backward, can_fuse, conv_bn_relu


def _chains(block) -> list[tuple]:
    """(conv, bn, relu) of each conv -> BN -> ReLU in F; the last one's ReLU comes after the sum."""
    if isinstance(block, Bottleneck):
        return [(block.conv1, block.bn1, block.relu1), (block.conv2, block.bn2, block.relu2),
                (block.conv3, block.bn3, block.relu3)]
    return [(block.conv1, block.bn1, block.relu1), (block.conv2, block.bn2, block.relu2)]


def _block_forward(block, x: np.ndarray):
    chains = _chains(block)
    if not all(can_fuse(*chain) for chain in chains):
        return NotImplemented                               # the block's own forward runs
    h = x
    for conv, bn, relu in chains[:-1]:
        h = conv_bn_relu(conv, bn, relu, h)                 # relu(bn(conv(h)))
    conv, bn, relu = chains[-1]
    s = None
    if block.residual:
        out_shape = (h.shape[0], conv.out_channels, *conv._output_size(h))
        s = shortcut(block, x, out_shape)                   # x, or downsample(x)
    z = conv_bn_relu(conv, bn, relu, h, residual=s)         # relu(bn(conv(h)) + s)
    records[block] = True                                   # its backward may run the twin's
    return z


def _block_backward(block, grad_output: np.ndarray) -> np.ndarray:
    (conv, bn, relu), *inner = reversed(_chains(block))
    if block.residual:
        d_out = relu.backward(grad_output)                  # dL/d(F(x) + shortcut(x))
        d = conv.backward(bn.backward(d_out))
    else:
        d = conv.backward(bn_relu_backward(bn, relu, grad_output))
    for conv, bn, relu in inner:
        d = conv.backward(bn_relu_backward(bn, relu, d))    # bn.backward(relu.backward(d))
    if not block.residual:
        return d
    return d + shortcut_backward(block, d_out)              # x fed both paths: gradients add


@twin(BasicBlock)
class BasicBlockTwin:
    forward = staticmethod(_block_forward)
    backward = staticmethod(_block_backward)


@twin(Bottleneck)
class BottleneckTwin:
    forward = staticmethod(_block_forward)
    backward = staticmethod(_block_backward)


@twin(ResNet)
class ResNetTwin:
    """models.ResNet's forward and backward, with the stem's conv -> BN -> ReLU fused."""

    @staticmethod
    def forward(model: ResNet, x: np.ndarray):
        if not (isinstance(model.conv1, Conv2d) and can_fuse(model.conv1, model.bn1, model.relu)):
            return NotImplemented
        x = conv_bn_relu(model.conv1, model.bn1, model.relu, x)
        x = model.maxpool(x)
        for stage in model.stages:
            x = stage(x)
        logits = model.fc(model.flatten(model.avgpool(x)))
        records[model] = True
        return logits

    @staticmethod
    def backward(model: ResNet, grad_output: np.ndarray, need_input_grad: bool = True):
        d = model.avgpool.backward(model.flatten.backward(model.fc.backward(grad_output)))
        for stage in reversed(model.stages):
            d = stage.backward(d)
        d = bn_relu_backward(model.bn1, model.relu, model.maxpool.backward(d))
        return model.conv1.backward(d, need_input_grad=need_input_grad)
