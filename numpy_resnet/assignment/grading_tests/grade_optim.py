"""Grading tests for the `optim` part: the SGD step (torch.optim.SGD's rule)."""

import pytest
from grading_common import assert_close, rng

from numpy_resnet.nn import Parameter
from numpy_resnet.optim import SGD

CONFIGS = [dict(lr=0.1), dict(lr=0.05, weight_decay=0.01), dict(lr=0.1, momentum=0.9),
           dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=1e-3),
           dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)]


def reference_steps(p0, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, buf = p0.copy(), None
    for grad in grads:
        g = grad + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_sgd_steps_follow_the_update_rule(config):
    p0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(4)]
    p = Parameter(p0.copy())
    opt = SGD([p], **config)
    for grad in grads:
        p.grad[...] = grad
        opt.step()
    assert_close(p.data, reference_steps(p0, grads, **config), f"parameter after 4 steps of SGD({config})")


def test_sgd_does_not_change_the_gradient():
    p = Parameter(rng.standard_normal(5))
    grad = rng.standard_normal(5)
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        p.grad[...] = grad
        opt.step()
        assert_close(p.grad, grad, "p.grad after step (the optimizer must not modify it)")
