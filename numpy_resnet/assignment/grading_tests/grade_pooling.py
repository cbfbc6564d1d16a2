"""Grading tests for the `pooling` part: the backward of MaxPool2d, AvgPool2d, AdaptiveAvgPool2d.

The pools unfold windows with kernels.im2col; the grader patches in its own im2col/col2im so
this part does not depend on the `conv` part.
"""

import numpy as np
import pytest
from grading_common import assert_close, numeric_gradient, rng

from numpy_resnet import kernels
from numpy_resnet.nn import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d


def _out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def reference_im2col(x, kh, kw, s, p):
    N, C, H, W = x.shape
    Ho, Wo = _out(H, kh, s, p), _out(W, kw, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = np.zeros((C, kh, kw, N, Ho, Wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, :, i:i + s * Ho:s, j:j + s * Wo:s].transpose(1, 0, 2, 3)
    return cols.reshape(C * kh * kw, N * Ho * Wo)


def reference_col2im(cols, x_shape, kh, kw, s, p):
    N, C, H, W = x_shape
    Ho, Wo = _out(H, kh, s, p), _out(W, kw, s, p)
    cols = cols.reshape(C, kh, kw, N, Ho, Wo)
    dxp = np.zeros((N, C, H + 2 * p, W + 2 * p), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + s * Ho:s, j:j + s * Wo:s] += cols[:, i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, p:p + H, p:p + W]


@pytest.fixture(autouse=True)
def reference_kernels(monkeypatch):
    monkeypatch.setattr(kernels, "im2col", reference_im2col)
    monkeypatch.setattr(kernels, "col2im", reference_col2im)


def _check(pool, x, what):
    g = rng.standard_normal(pool(x).shape)
    pool(x)
    dx = pool.backward(g)
    loss = lambda: float(np.sum(g * pool(x)))                 # noqa: E731
    assert_close(dx, numeric_gradient(loss, x), what, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_maxpool_backward_routes_gradient_to_the_max(k, s, p):
    x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0    # distinct values, no ties
    _check(MaxPool2d(k, s, p), x, f"MaxPool2d({k}, {s}, {p}) dL/dx")


@pytest.mark.parametrize("k,s,p,ceil,include", [(2, 2, 0, False, True), (3, 2, 1, False, True),
                                                (3, 2, 1, True, False), (3, 1, 1, False, False)])
def test_avgpool_backward_spreads_gradient_over_the_window(k, s, p, ceil, include):
    x = rng.standard_normal((2, 2, 7, 6))
    pool = AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include)
    _check(pool, x, f"AvgPool2d({k}, {s}, {p}, ceil_mode={ceil}, count_include_pad={include}) dL/dx")


def test_adaptive_avgpool_backward():
    x = rng.standard_normal((3, 4, 5, 3))
    _check(AdaptiveAvgPool2d(1), x, "AdaptiveAvgPool2d dL/dx")
