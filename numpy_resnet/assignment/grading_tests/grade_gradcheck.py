"""Grading tests for the `gradcheck` part: the finite differences of the gradient checker."""

import numpy as np
from grading_common import assert_close, rng

from numpy_resnet import gradcheck as gc
from numpy_resnet.nn import Module, Parameter


class ScaledTanh(Module):
    """y = tanh(w ⊙ x) with a parameter w: smooth, so its gradients are well defined."""

    def __init__(self, shape, wrong=False):
        super().__init__()
        self.w = Parameter(rng.uniform(0.5, 1.5, shape))
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        self.y = np.tanh(self.w.data * x)
        return self.y

    def backward(self, grad_output):
        d = grad_output * (1 - self.y ** 2)
        self.w.grad += d * self.x
        return d * self.w.data * (2.0 if self.wrong else 1.0)


def test_numeric_entry_returns_the_four_differences():
    w = rng.standard_normal((3, 2))
    x = rng.standard_normal((3, 2))
    g = rng.standard_normal((3, 2))

    def probe(x_in):
        return np.sin(w * x_in) + w ** 3

    def L(values):
        return float(np.vdot(g, np.sin(values * x) + values ** 3))

    y0 = probe(x)
    h = 1e-4
    index = (int(rng.integers(3)), int(rng.integers(2)))
    original = w.copy()
    central, central_2h, left, right = gc._numeric_entry(probe, x, w, index, g, y0, h)
    assert_close(w, original, "the checked tensor after _numeric_entry (put the entry back)", rtol=0, atol=0)

    def shifted(step):
        v = w.copy()
        v[index] += step
        return L(v)

    expected = [(shifted(h) - shifted(-h)) / (2 * h), (shifted(2 * h) - shifted(-2 * h)) / (4 * h),
                (L(w) - shifted(-h)) / h, (shifted(h) - L(w)) / h]
    names = ["central (step h)", "central (step 2h)", "left one-sided", "right one-sided"]
    for got, want, name in zip((central, central_2h, left, right), expected, names, strict=True):
        assert_close(got, want, f"_numeric_entry: {name} difference", rtol=1e-6, atol=1e-8)


def test_gradcheck_passes_a_correct_backward():
    report = gc.gradcheck(ScaledTanh((2, 3)), rng.standard_normal((2, 3)))
    assert report.max_error < 1e-6, f"a correct backward should pass, got\n{report}"


def test_gradcheck_catches_a_wrong_backward():
    report = gc.gradcheck(ScaledTanh((2, 3), wrong=True), rng.standard_normal((2, 3)))
    assert report.errors["input"] > 1e-2, f"a backward off by 2x should fail, got\n{report}"
