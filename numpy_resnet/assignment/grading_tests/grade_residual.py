"""Grading tests for the `residual` part: BasicBlock and Bottleneck forward and backward.

Every layer of the block (each conv, BatchNorm and ReLU, and the downsample) is replaced by
one of the grader's own smooth stand-ins with its own random weights, so this part depends on
no other part, finite differences are accurate everywhere, and a layer used in the wrong place
changes the result. The grader's reference is the textbook's composition of those same layers,
in float64:

    BasicBlock   y = relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))
    Bottleneck   y = relu3(bn3(conv3(relu2(bn2(conv2(relu1(bn1(conv1(x)))))))) + shortcut(x))

with shortcut(x) = x, or downsample(x) when the block changes the shape; a plain block
(residual=False) has no shortcut term. The backward is graded against the grader's central
differences of that reference: dL/dx and the gradient of every layer's weights.
"""

import numpy as np
import pytest
from grading_common import assert_close, numeric_gradient, rng

from numpy_resnet.blocks import BasicBlock, Bottleneck
from numpy_resnet.nn import Module, Parameter


class ConvStandIn(Module):
    """y = A·tanh(x) over channels, then every `stride`-th pixel: a smooth conv's shapes.

    x: (N, C_in, H, W) -> y: (N, C_out, ⌈H/stride⌉, ⌈W/stride⌉),  A: (C_out, C_in)
    """

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.weight = Parameter(rng.standard_normal((out_channels, in_channels)))
        self.stride = stride

    def forward(self, x):
        self.x = x
        y = np.einsum("oc,nchw->nohw", self.weight.data, np.tanh(x))
        return y[:, :, ::self.stride, ::self.stride]

    def backward(self, grad_output):
        full = np.zeros((self.x.shape[0], self.weight.data.shape[0]) + self.x.shape[2:])
        full[:, :, ::self.stride, ::self.stride] = grad_output
        self.weight.grad += np.einsum("nohw,nchw->oc", full, np.tanh(self.x))
        return np.einsum("oc,nohw->nchw", self.weight.data, full) * (1 - np.tanh(self.x) ** 2)


class BatchNormStandIn(Module):
    """y = γ·x + β per channel.  x, y: (N, C, H, W)."""

    def __init__(self, num_features):
        super().__init__()
        self.weight = Parameter(rng.uniform(0.5, 2.0, num_features))
        self.bias = Parameter(rng.standard_normal(num_features))

    def forward(self, x):
        self.x = x
        return self.weight.data[:, None, None] * x + self.bias.data[:, None, None]

    def backward(self, grad_output):
        self.weight.grad += np.sum(grad_output * self.x, axis=(0, 2, 3))
        self.bias.grad += np.sum(grad_output, axis=(0, 2, 3))
        return grad_output * self.weight.data[:, None, None]


class ReLUStandIn(Module):
    """y = log(1 + e^(a·x)) / a, a softplus whose sharpness `a` differs from one instance to the next."""

    def __init__(self):
        super().__init__()
        self.a = rng.uniform(0.5, 2.0)

    def forward(self, x):
        self.x = x
        return np.logaddexp(0, self.a * x) / self.a

    def backward(self, grad_output):
        return grad_output / (1 + np.exp(-self.a * self.x))


def _block(kind, c_in, c_out, stride, residual):
    """The student's block, every layer swapped for a stand-in of the same shapes."""
    cls = BasicBlock if kind == "basic" else Bottleneck
    planes = c_out // cls.expansion
    downsample = ConvStandIn(c_in, c_out, stride) if residual and (stride != 1 or c_in != c_out) else None
    block = cls(c_in, planes, stride, downsample=downsample, residual=residual)
    for n in range(1, 4 if kind == "bottleneck" else 3):
        conv, bn = getattr(block, f"conv{n}"), getattr(block, f"bn{n}")
        setattr(block, f"conv{n}", ConvStandIn(conv.in_channels, conv.out_channels, conv.stride))
        setattr(block, f"bn{n}", BatchNormStandIn(bn.num_features))
        setattr(block, f"relu{n}", ReLUStandIn())
    return block


def reference_forward(block, x):
    """The textbook's block, composed by the grader from the block's layers."""
    out = block.relu1(block.bn1(block.conv1(x)))
    if isinstance(block, Bottleneck):
        out = block.relu2(block.bn2(block.conv2(out)))
        out, last_relu = block.bn3(block.conv3(out)), block.relu3
    else:
        out, last_relu = block.bn2(block.conv2(out)), block.relu2
    if block.residual:
        out = out + (x if block.downsample is None else block.downsample(x))
    return last_relu(out)


# (kind, C_in, C_out, stride, residual)
CASES = [("basic", 4, 4, 1, True), ("basic", 2, 4, 2, True), ("basic", 3, 4, 1, False),
         ("bottleneck", 4, 4, 1, True), ("bottleneck", 4, 8, 2, True), ("bottleneck", 4, 8, 1, False)]


def _name(case):
    kind, c_in, c_out, stride, residual = case
    shortcut = ("plain, no shortcut" if not residual
                else "identity shortcut" if c_in == c_out and stride == 1 else "downsample shortcut")
    block = "BasicBlock" if kind == "basic" else "Bottleneck"
    return f"{block}({c_in} -> {c_out}, stride {stride}, {shortcut})"


@pytest.mark.parametrize("case", CASES, ids=_name)
def test_block_forward_is_the_last_relu_of_branch_plus_shortcut(case):
    block = _block(*case)
    x = rng.standard_normal((2, case[1], 4, 4))
    expected = reference_forward(block, x)
    assert_close(block(x), expected, f"{_name(case)} forward")


@pytest.mark.parametrize("case", CASES, ids=_name)
def test_block_backward_gives_the_gradients_of_x_and_of_every_layer(case):
    block = _block(*case)
    x = rng.standard_normal((2, case[1], 4, 4))
    g = rng.standard_normal(reference_forward(block, x).shape)

    def loss():
        return float(np.sum(g * reference_forward(block, x)))

    params = dict(block.named_parameters())
    expected = {name: numeric_gradient(loss, p.data) for name, p in params.items()}
    expected_dx = numeric_gradient(loss, x)
    block.zero_grad()
    block(x)
    dx = block.backward(g)
    assert_close(dx, expected_dx, f"{_name(case)} dL/dx", rtol=1e-5, atol=1e-6)
    for name, p in params.items():
        assert_close(p.grad, expected[name], f"{_name(case)} dL/d({name}): each layer's backward "
                     f"once, with the gradient at its output", rtol=1e-5, atol=1e-6)
