"""Grading tests for the `activations` part: ReLU forward and backward."""

import numpy as np
from grading_common import assert_close, rng

from numpy_resnet.nn import ReLU


def test_relu_forward_is_max_of_x_and_zero():
    x = rng.standard_normal((3, 4, 5, 2))
    assert_close(ReLU()(x), np.maximum(x, 0), "ReLU forward")


def test_relu_backward_passes_gradient_where_x_is_positive():
    x = rng.standard_normal((7, 6))
    g = rng.standard_normal((7, 6))
    relu = ReLU()
    relu(x)
    assert_close(relu.backward(g), g * (x > 0), "ReLU backward")


def test_relu_backward_is_zero_at_zero():
    x = np.array([[-1.0, 0.0, 2.0, 0.0]])
    relu = ReLU()
    relu(x)
    assert_close(relu.backward(np.ones_like(x)), [[0.0, 0.0, 1.0, 0.0]], "ReLU backward at x = 0")


def test_relu_does_not_change_its_input():
    x = rng.standard_normal((4, 4))
    keep = x.copy()
    relu = ReLU()
    relu(x)
    relu.backward(np.ones_like(x))
    assert_close(x, keep, "x after ReLU forward and backward")
