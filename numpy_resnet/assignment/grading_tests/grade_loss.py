"""Grading tests for the `loss` part: CrossEntropyLoss forward and backward."""

import numpy as np
import pytest
from grading_common import assert_close, numeric_gradient, rng

from numpy_resnet.nn import CrossEntropyLoss


def reference_loss(z, t, eps, reduction):
    N, K = z.shape
    log_p = z - z.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    q = np.full((N, K), eps / K)
    q[np.arange(N), t] += 1 - eps
    total = -(q * log_p).sum()
    return total / N if reduction == "mean" else total


CASES = [(0.0, "mean"), (0.1, "mean"), (0.0, "sum"), (0.3, "sum")]


@pytest.mark.parametrize("eps,reduction", CASES)
def test_cross_entropy_forward(eps, reduction):
    z = rng.standard_normal((6, 5)) * 3
    t = rng.integers(0, 5, 6)
    loss = CrossEntropyLoss(label_smoothing=eps, reduction=reduction)(z, t)
    assert isinstance(loss, float), f"the loss should be a Python float, got {type(loss).__name__}"
    assert_close(loss, reference_loss(z, t, eps, reduction), f"loss (ε={eps}, {reduction})")


def test_cross_entropy_is_stable_for_large_logits():
    z = rng.standard_normal((4, 3)) + 1000.0
    t = rng.integers(0, 3, 4)
    assert_close(CrossEntropyLoss()(z, t), reference_loss(z, t, 0.0, "mean"), "loss with logits near 1000")


@pytest.mark.parametrize("eps,reduction", CASES)
def test_cross_entropy_backward_matches_finite_differences(eps, reduction):
    z = rng.standard_normal((5, 4)) * 2
    t = rng.integers(0, 4, 5)
    crit = CrossEntropyLoss(label_smoothing=eps, reduction=reduction)
    crit(z, t)
    scale = rng.uniform(0.5, 2.0)
    dz = crit.backward(scale)
    numeric = numeric_gradient(lambda: scale * crit(z, t), z)
    assert_close(dz, numeric, f"dL/dz (ε={eps}, {reduction}, upstream gradient {scale:.2f})")
