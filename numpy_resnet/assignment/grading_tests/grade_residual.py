"""Grading tests for the `residual` part: BasicBlock and Bottleneck forward and backward.

The block's branch F, its last activation and its downsample are replaced by the grader's
own smooth stand-ins, so this part depends on no other part: it checks only how the block
puts F, the shortcut and the activation together, forward and backward.
"""

import numpy as np
import pytest
from grading_common import assert_close, numeric_gradient, rng

from numpy_resnet.blocks import BasicBlock, Bottleneck
from numpy_resnet.nn import Module


class Softplus(Module):
    """y = log(1 + eˣ): smooth, so finite differences are exact enough everywhere."""

    def forward(self, x):
        self.x = x
        return np.logaddexp(0, x)

    def backward(self, grad_output):
        return grad_output / (1 + np.exp(-self.x))


class Mix(Module):
    """y = A·tanh(x) over channels, then every `stride`-th pixel: a smooth shape changer."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.A = rng.standard_normal((c_out, c_in))
        self.stride = stride

    def forward(self, x):
        self.x = x
        y = np.einsum("oc,nchw->nohw", self.A, np.tanh(x))
        return y[:, :, ::self.stride, ::self.stride]

    def backward(self, grad_output):
        full = np.zeros((self.x.shape[0], self.A.shape[0]) + self.x.shape[2:])
        full[:, :, ::self.stride, ::self.stride] = grad_output
        return np.einsum("oc,nohw->nchw", self.A, full) * (1 - np.tanh(self.x) ** 2)


def _block(kind, c_in, c_out, stride, residual):
    cls = BasicBlock if kind == "basic" else Bottleneck
    planes = c_out // cls.expansion
    downsample = Mix(c_in, c_out, stride) if residual and (stride != 1 or c_in != c_out) else None
    block = cls(c_in, planes, stride, downsample=downsample, residual=residual)
    branch = Mix(c_in, c_out, stride)
    object.__setattr__(block, "_branch", branch.forward)        # F(x), the grader's
    object.__setattr__(block, "_branch_backward", branch.backward)
    act = Softplus()
    setattr(block, "relu2" if kind == "basic" else "relu3", act)
    return block, branch, downsample, act


CASES = [("basic", 4, 4, 1, True), ("basic", 2, 4, 2, True), ("basic", 3, 4, 1, False),
         ("bottleneck", 4, 4, 1, True), ("bottleneck", 4, 8, 2, True), ("bottleneck", 4, 8, 1, False)]


@pytest.mark.parametrize("case", CASES)
def test_block_forward_is_activation_of_branch_plus_shortcut(case):
    block, branch, downsample, act = _block(*case)
    x = rng.standard_normal((2, case[1], 4, 4))
    residual = case[4]
    inner = branch.forward(x)
    if residual:
        inner = inner + (x if downsample is None else downsample.forward(x))
    assert_close(block(x), np.logaddexp(0, inner), f"{case} forward")


@pytest.mark.parametrize("case", CASES)
def test_block_backward_matches_finite_differences(case):
    block, *_ = _block(*case)
    x = rng.standard_normal((2, case[1], 4, 4))
    g = rng.standard_normal(block(x).shape)
    block(x)
    dx = block.backward(g)
    numeric = numeric_gradient(lambda: float(np.sum(g * block(x))), x)
    assert_close(dx, numeric, f"{case} dL/dx", rtol=1e-5, atol=1e-6)
