"""Grading tests for the `linear` part: Linear forward and backward."""

import numpy as np
from grading_common import assert_close, numeric_gradient, rng

from numpy_resnet.nn import Linear


def _layer(n_in, n_out, bias=True):
    layer = Linear(n_in, n_out, bias=bias).to(np.float64)
    layer.weight.data[...] = rng.standard_normal((n_out, n_in))
    if bias:
        layer.bias.data[...] = rng.standard_normal(n_out)
    return layer


def test_linear_forward_is_x_times_w_transpose_plus_b():
    layer = _layer(5, 3)
    x = rng.standard_normal((4, 5))
    assert_close(layer(x), x @ layer.weight.data.T + layer.bias.data, "Linear forward")


def test_linear_forward_without_bias():
    layer = _layer(6, 2, bias=False)
    x = rng.standard_normal((3, 6))
    assert_close(layer(x), x @ layer.weight.data.T, "Linear(bias=False) forward")


def test_linear_backward_matches_finite_differences():
    layer = _layer(4, 3)
    x = rng.standard_normal((5, 4))
    g = rng.standard_normal((5, 3))
    layer.zero_grad()
    layer(x)
    dx = layer.backward(g)
    loss = lambda: float(np.sum(g * layer(x)))              # noqa: E731
    assert_close(dx, numeric_gradient(loss, x), "dL/dx")
    assert_close(layer.weight.grad, numeric_gradient(loss, layer.weight.data), "dL/dW")
    assert_close(layer.bias.grad, numeric_gradient(loss, layer.bias.data), "dL/db")


def test_linear_backward_accumulates_into_grad():
    layer = _layer(3, 2)
    x = rng.standard_normal((4, 3))
    g = rng.standard_normal((4, 2))
    layer.zero_grad()
    layer(x)
    layer.backward(g)
    layer(x)
    layer.backward(g)
    assert_close(layer.weight.grad, 2 * g.T @ x, "dW after two backward calls (use +=)")
    assert_close(layer.bias.grad, 2 * g.sum(axis=0), "db after two backward calls (use +=)")
