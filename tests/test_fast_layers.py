"""BatchNorm2d and ReLU on the fast engine give the reference's numbers; the worker pool, BLAS
and memory helpers behind the fast engine do what they say.

The fast BatchNorm recomputes x̂ with the reference's operations, so in train and eval mode,
forward and backward, its numbers equal the readable layer's up to the order of the float64
sums. ReLU's are equal exactly, NaN and -0.0 included.
"""

from __future__ import annotations

import numpy as np
import pytest

from numpy_resnet import nn, use_engine
from numpy_resnet.engine.dispatch import records, runs_as_written
from numpy_resnet.kernels import blas, conv_nhwc, elementwise, memory, threads


@pytest.fixture(params=["small arrays on one thread", "every array on every worker"])
def grain(request, monkeypatch):
    """threads.GRAIN as it is, and 1: the test arrays are small, so both ways get tested."""
    if request.param == "every array on every worker":
        monkeypatch.setattr(threads, "GRAIN", 1)
    return threads.GRAIN


def both_engines(layer, x: np.ndarray, dy: np.ndarray) -> dict:
    """{engine: (y, dx, {name: grad})} for one forward and backward, the same starting state."""
    state = layer.state_dict()
    results = {}
    for engine in ("reference", "fast"):
        layer.load_state_dict(state)
        layer.zero_grad()
        with use_engine(engine):
            y = layer(x)
            dx = layer.backward(dy)
        grads = {name: p.grad.copy() for name, p in layer.named_parameters()}
        results[engine] = (y, dx, grads, layer.state_dict())
    return results


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("layout", ["C order", "channels-last"])
def test_fast_batchnorm_equals_the_reference_layer(dtype, train, layout, grain):
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm2d(5).to(dtype)
    bn.weight.data = rng.standard_normal(5).astype(dtype)
    bn.bias.data = rng.standard_normal(5).astype(dtype)
    bn.running_mean = rng.standard_normal(5).astype(dtype)
    bn.running_var = rng.uniform(0.5, 2, 5).astype(dtype)
    x = (3 + 2 * rng.standard_normal((4, 5, 6, 7))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    if layout == "channels-last":
        x, dy = conv_nhwc.from_nhwc(conv_nhwc.to_nhwc(x)), conv_nhwc.from_nhwc(conv_nhwc.to_nhwc(dy))
    bn.train(train)
    results = both_engines(bn, x, dy)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    (y0, dx0, g0, s0), (y1, dx1, g1, s1) = results["reference"], results["fast"]
    assert y1.dtype == y0.dtype and dx1.dtype == dx0.dtype
    assert conv_nhwc.is_channels_last(y1) and conv_nhwc.is_channels_last(dx1)
    np.testing.assert_allclose(y1, y0, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dx1, dx0, rtol=rtol, atol=rtol)
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=rtol, atol=rtol, err_msg=name)
    for key in s0:                                      # the running statistics too
        np.testing.assert_allclose(s1[key], s0[key], rtol=rtol, err_msg=key)


def test_fast_batchnorm_rejects_a_single_value_per_channel_like_the_reference():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match="more than one value per channel"):
        bn(np.ones((1, 3, 1, 1), np.float32))


@pytest.mark.parametrize("layout", ["C order", "channels-last", "a strided view"])
def test_fast_relu_equals_the_reference_exactly_nan_and_negative_zero_included(layout, grain):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5, 6))
    x.flat[:4] = [np.nan, -0.0, 0.0, -np.inf]
    dy = rng.standard_normal(x.shape)
    dy.flat[4] = np.nan
    if layout == "channels-last":
        x = conv_nhwc.from_nhwc(conv_nhwc.to_nhwc(x))
    elif layout == "a strided view":
        x = np.repeat(x, 2, axis=3)[..., ::2]           # not contiguous: the reference runs
    results = both_engines(nn.ReLU(), x, dy)
    (y0, dx0, _, _), (y1, dx1, _, _) = results["reference"], results["fast"]
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(np.signbit(y1), np.signbit(y0))
    np.testing.assert_array_equal(dx1, dx0)
    if layout != "a strided view":
        assert y1.strides == x.strides                  # the output keeps the input's layout


def test_relu_backward_accepts_a_gradient_laid_out_differently_from_its_output():
    x = conv_nhwc.from_nhwc(np.random.default_rng(2).standard_normal((2, 3, 3, 4)))
    relu = nn.ReLU()
    y = relu(x)
    dy = np.ascontiguousarray(np.random.default_rng(3).standard_normal(y.shape))   # C order
    np.testing.assert_array_equal(relu.backward(dy), dy * (x > 0))


def test_a_subclass_that_redefines_backward_gets_the_reference_forward():
    class MyBatchNorm(nn.BatchNorm2d):
        def backward(self, dy):
            x_hat, inv_std, _ = self._saved()            # the reference forward's cache
            return dy * x_hat

    bn = MyBatchNorm(2)
    assert not runs_as_written(bn) and runs_as_written(nn.BatchNorm2d(2))
    x = np.random.default_rng(4).standard_normal((2, 2, 3, 3)).astype(np.float32)
    bn(x)
    assert bn.backward(np.ones_like(x)).shape == x.shape and bn not in records


def test_backward_after_an_engine_switch_uses_what_forward_kept():
    conv = nn.Conv2d(2, 3, 3, padding=1).to(np.float64)
    x = np.random.default_rng(5).standard_normal((2, 2, 4, 4))
    y = conv(x)                                         # the fast twin
    with use_engine("reference"):
        dx_fast = conv.backward(np.ones_like(y))        # still the twin's backward
        conv(x)
        dx_reference = conv.backward(np.ones_like(y))
    y = conv(x)
    with use_engine("reference"):
        conv.forward(x)                                 # a direct call dispatches too
    np.testing.assert_allclose(conv.backward(np.ones_like(y)), dx_reference, rtol=1e-12)
    np.testing.assert_allclose(dx_fast, dx_reference, rtol=1e-12)


# ----- the machinery -----------------------------------------------------------------------
def test_split_cuts_a_range_into_nearly_equal_contiguous_parts():
    assert threads.split(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert threads.split(2, 2) == [(0, 1), (1, 2)]
    parts = threads.split(1001, 7)
    assert parts[0][0] == 0 and parts[-1][1] == 1001
    assert {hi - lo for lo, hi in parts} <= {143, 142}


def test_parallel_runs_every_part_once_and_returns_results_in_order():
    before = threads.get_num_threads()
    try:
        threads.set_num_threads(3)
        seen = threads.parallel(lambda w, lo, hi: (w, lo, hi), 10)
        assert seen == [(0, 0, 3), (1, 3, 6), (2, 6, 10)]
        assert threads.parallel(lambda w, lo, hi: (w, lo, hi), 2) == [(0, 0, 1), (1, 1, 2)]
        with pytest.raises(ZeroDivisionError):          # a worker's error reaches the caller
            threads.parallel(lambda w, lo, hi: 1 / (w - 1), 6)
    finally:
        threads.set_num_threads(before)
    with pytest.raises(ValueError, match="at least 1"):
        threads.set_num_threads(0)


def test_work_smaller_than_the_grain_runs_on_the_calling_thread_alone():
    before = threads.get_num_threads()
    try:
        threads.set_num_threads(2)
        assert threads.parallel(lambda w, lo, hi: (w, lo, hi), 10, grain=6) == [(0, 0, 10)]
        assert threads.parallel(lambda w, lo, hi: (w, lo, hi), 12, grain=6) == [(0, 0, 6), (1, 6, 12)]
    finally:
        threads.set_num_threads(before)


def test_scratch_buffers_are_private_to_a_worker_and_reused():
    a = threads.scratch(0, "test", (4, 5), np.float32)
    b = threads.scratch(0, "test", (2, 3), np.float32)
    c = threads.scratch(1, "test", (4, 5), np.float32)
    assert np.shares_memory(a, b) and not np.shares_memory(a, c)
    assert b.shape == (2, 3) and b.flags.c_contiguous


def test_the_fast_path_keeps_blas_on_one_thread_per_worker():
    threads.parallel(lambda w, lo, hi: None, 2)         # makes the pool if needed
    if blas.corename() is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS that can be reached")
    if threads.get_num_threads() > 1:
        assert blas.get_num_threads() == 1
    assert "OpenBLAS" in blas.describe()


def test_keep_freed_memory_is_harmless_to_call_twice():
    first, second = memory.keep_freed_memory(), memory.keep_freed_memory()
    assert first == second


def test_flat_view_refuses_arrays_with_gaps():
    x = np.zeros((4, 6))
    assert elementwise.flat_view(x[:, ::2]) is None
    assert np.shares_memory(elementwise.flat_view(x.T), x)
