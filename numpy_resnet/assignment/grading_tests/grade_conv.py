"""Grading tests for the `conv` part: im2col, col2im (NumPy) and Conv2d forward and backward.

Conv2d is tested with the grader's own im2col/col2im patched in, so a bug in one of the
student's kernels costs the kernel tests and not the layer tests as well.
"""

import numpy as np
import pytest
from grading_common import assert_close, numeric_gradient, rng

from numpy_resnet import kernels
from numpy_resnet.kernels import col2im_numpy, im2col_numpy
from numpy_resnet.nn import Conv2d

# (N, C, H, W, k, stride, padding): non-square images, overlapping and strided windows
CASES = [(2, 3, 5, 6, 3, 1, 1), (1, 2, 7, 5, 3, 2, 0), (3, 1, 6, 6, 2, 2, 1), (2, 2, 4, 5, 1, 1, 0)]


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


def reference_conv(x, w, b, s, p, groups):
    N, C, H, W = x.shape
    C_out, C_g, k, _ = w.shape
    Ho, Wo = _out(H, k, s, p), _out(W, k, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    y = np.zeros((N, C_out, Ho, Wo))
    per_group = C_out // groups
    for o in range(C_out):
        g = o // per_group
        for h in range(Ho):
            for v in range(Wo):
                window = xp[:, g * C_g:(g + 1) * C_g, h * s:h * s + k, v * s:v * s + k]
                y[:, o, h, v] = np.sum(window * w[o], axis=(1, 2, 3))
    return y if b is None else y + b[None, :, None, None]


@pytest.fixture
def reference_kernels(monkeypatch):
    monkeypatch.setattr(kernels, "im2col", reference_im2col)
    monkeypatch.setattr(kernels, "col2im", reference_col2im)


@pytest.mark.parametrize("case", CASES)
def test_im2col_numpy_matches_the_definition(case):
    N, C, H, W, k, s, p = case
    x = rng.standard_normal((N, C, H, W))
    assert_close(im2col_numpy(x, k, k, s, p), reference_im2col(x, k, k, s, p), f"im2col {case}")


@pytest.mark.parametrize("case", CASES)
def test_col2im_numpy_adds_columns_back(case):
    N, C, H, W, k, s, p = case
    cols = rng.standard_normal((C * k * k, N * _out(H, k, s, p) * _out(W, k, s, p)))
    assert_close(col2im_numpy(cols, (N, C, H, W), k, k, s, p),
                 reference_col2im(cols, (N, C, H, W), k, k, s, p), f"col2im {case}")


def _conv(C_in, C_out, k, s, p, groups, bias):
    conv = Conv2d(C_in, C_out, k, stride=s, padding=p, groups=groups, bias=bias).to(np.float64)
    conv.weight.data[...] = rng.standard_normal(conv.weight.data.shape)
    if bias:
        conv.bias.data[...] = rng.standard_normal(C_out)
    return conv


CONV_CASES = [(3, 4, 3, 1, 1, 1, True), (4, 6, 3, 2, 1, 2, False), (2, 3, 1, 2, 0, 1, True)]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_matches_the_direct_sum(case, reference_kernels):
    C_in, C_out, k, s, p, groups, bias = case
    conv = _conv(*case)
    x = rng.standard_normal((2, C_in, 6, 5))
    expected = reference_conv(x, conv.weight.data, conv.bias.data if bias else None, s, p, groups)
    assert_close(conv(x), expected, f"Conv2d forward {case}")


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_backward_matches_finite_differences(case, reference_kernels):
    C_in, C_out, k, s, p, groups, bias = case
    conv = _conv(*case)
    x = rng.standard_normal((2, C_in, 5, 4))
    g = rng.standard_normal(conv(x).shape)
    conv.zero_grad()
    conv(x)
    dx = conv.backward(g)
    loss = lambda: float(np.sum(g * conv(x)))                 # noqa: E731
    assert_close(dx, numeric_gradient(loss, x), "dL/dx")
    assert_close(conv.weight.grad, numeric_gradient(loss, conv.weight.data), "dL/dW")
    if bias:
        assert_close(conv.bias.grad, numeric_gradient(loss, conv.bias.data), "dL/db")


def test_conv_backward_accumulates_into_grad(reference_kernels):
    conv = _conv(2, 3, 3, 1, 1, 1, True)
    x = rng.standard_normal((2, 2, 4, 4))
    g = rng.standard_normal((2, 3, 4, 4))
    conv.zero_grad()
    conv(x)
    conv.backward(g)
    once = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv(x)
    conv.backward(g)
    assert_close(conv.weight.grad, 2 * once[0], "dW after two backward calls (use +=)")
    assert_close(conv.bias.grad, 2 * once[1], "db after two backward calls (use +=)")
