"""Grading tests for the `batchnorm` part: BatchNorm2d forward, running statistics, backward."""

import numpy as np
import pytest
from grading_common import assert_close, numeric_gradient, rng

from numpy_resnet.nn import BatchNorm2d


def _bn(C, momentum=0.1):
    bn = BatchNorm2d(C, momentum=momentum).to(np.float64)
    bn.weight.data[...] = rng.uniform(0.5, 2.0, C)
    bn.bias.data[...] = rng.standard_normal(C)
    return bn


def _x(shape):
    """Random input whose channels have different means and scales."""
    scale = rng.uniform(0.5, 3, shape[1])[:, None, None]
    return rng.standard_normal(shape) * scale + rng.standard_normal(shape[1])[:, None, None]


def test_train_forward_normalises_each_channel():
    bn = _bn(3)
    x = _x((4, 3, 5, 2))
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    expected = bn.weight.data[:, None, None] * (x - mu) / np.sqrt(var + bn.eps) + bn.bias.data[:, None, None]
    assert_close(bn(x), expected, "BatchNorm2d train forward")


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_running_statistics_follow_pytorch(momentum):
    bn = _bn(2, momentum)
    mean, var = np.zeros(2), np.ones(2)
    for step in range(1, 4):
        x = _x((3, 2, 4, 3))
        bn(x)
        m = momentum if momentum is not None else 1.0 / step
        M = 3 * 4 * 3
        mean = (1 - m) * mean + m * x.mean(axis=(0, 2, 3))
        var = (1 - m) * var + m * x.var(axis=(0, 2, 3)) * M / (M - 1)
    assert_close(bn.running_mean, mean, f"running_mean (momentum={momentum})")
    assert_close(bn.running_var, var, f"running_var (momentum={momentum}, unbiased variance)")


def test_eval_forward_uses_running_statistics():
    bn = _bn(3)
    bn.running_mean = rng.standard_normal(3)
    bn.running_var = rng.uniform(0.5, 2, 3)
    bn.eval()
    saved = bn.running_mean.copy()
    x = _x((2, 3, 3, 3))
    expected = (bn.weight.data[:, None, None] * (x - bn.running_mean[:, None, None])
                / np.sqrt(bn.running_var[:, None, None] + bn.eps) + bn.bias.data[:, None, None])
    assert_close(bn(x), expected, "BatchNorm2d eval forward")
    assert_close(bn.running_mean, saved, "running_mean after an eval forward (must not change)")


@pytest.mark.parametrize("train", [True, False])
def test_backward_matches_finite_differences(train):
    bn = _bn(3)
    bn.running_mean = rng.standard_normal(3)
    bn.running_var = rng.uniform(0.5, 2, 3)
    bn.train(train)
    saved = bn.running_mean.copy(), bn.running_var.copy()
    x = _x((3, 3, 3, 2))
    g = rng.standard_normal(x.shape)

    def loss():
        bn.running_mean, bn.running_var = saved[0].copy(), saved[1].copy()
        return float(np.sum(g * bn(x)))

    bn.zero_grad()
    loss()
    dx = bn.backward(g)
    mode = "train" if train else "eval"
    assert_close(dx, numeric_gradient(loss, x), f"dL/dx ({mode})", rtol=1e-4, atol=1e-6)
    assert_close(bn.weight.grad, numeric_gradient(loss, bn.weight.data), f"dL/dγ ({mode})", rtol=1e-4)
    assert_close(bn.bias.grad, numeric_gradient(loss, bn.bias.data), f"dL/dβ ({mode})", rtol=1e-4)
