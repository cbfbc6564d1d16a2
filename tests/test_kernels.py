"""The kernels agree with each other: NumPy reference, Numba twin, and the loops of the definition.

Three facts are checked on random shapes (hypothesis draws batch, channels, non-square
images, kernel, stride and padding):

1. `im2col_numba` / `col2im_numba` compute what `im2col_numpy` / `col2im_numpy` compute;
2. col2im is the adjoint of im2col:  <im2col(x), y> = <x, col2im(y)>  for every x and y;
3. Conv2d (im2col + GEMM) equals `conv2d_naive` (four loops) on either engine, and its
   backward, like pooling's, does not depend on the engine.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_resnet import get_engine, nn, use_engine
from numpy_resnet.engine import ENGINES
from numpy_resnet.kernels import conv2d_naive, conv_output_size
from numpy_resnet.kernels import im2col_numba as numba_loops
from numpy_resnet.kernels.im2col_numba import col2im_numba, im2col_numba
from numpy_resnet.kernels.im2col_numpy import col2im_numpy, im2col_numpy
from numpy_resnet.nn import AvgPool2d, Conv2d, MaxPool2d

# im2col copies numbers and never rounds; col2im adds overlapping windows, so allow rounding
SUM_RTOL = {np.float64: 1e-12, np.float32: 1e-6}
# the Numba kernels compile once per dtype (then load from the on-disk cache): examples stay cheap
EXAMPLES = settings(max_examples=40, deadline=None)
DTYPES = [np.float64, np.float32]


def assert_close(got: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    """Elementwise |got - expected| <= rtol · max|expected|: relative to the tensor's scale."""
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    scale = float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


@st.composite
def unfold_geometry(draw) -> dict:
    """A valid im2col problem: the padded image is at least as large as the kernel."""
    k = draw(st.sampled_from([1, 2, 3, 5, 7]))
    padding = draw(st.integers(0, 3))
    smallest = max(1, k - 2 * padding)              # so that H_out, W_out >= 1
    return dict(
        N=draw(st.integers(1, 3)),
        C=draw(st.integers(1, 5)),
        H=draw(st.integers(smallest, 12)),
        W=draw(st.integers(smallest, 12)),          # drawn apart from H: mostly non-square
        k=k,
        stride=draw(st.integers(1, 3)),
        padding=padding,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def random_problem(g: dict, dtype) -> tuple[np.ndarray, np.ndarray]:
    """x: (N, C, H, W) and a cols-shaped y: (C·k·k, N·H_out·W_out), both random."""
    rng = np.random.default_rng(g["seed"])
    H_out = conv_output_size(g["H"], g["k"], g["stride"], g["padding"])
    W_out = conv_output_size(g["W"], g["k"], g["stride"], g["padding"])
    x = rng.standard_normal((g["N"], g["C"], g["H"], g["W"])).astype(dtype)
    y = rng.standard_normal((g["C"] * g["k"] ** 2, g["N"] * H_out * W_out)).astype(dtype)
    return x, y


# ----- 1. the Numba twin computes what the NumPy reference computes ---------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(g=unfold_geometry())
def test_im2col_numba_equals_numpy_reference(dtype, g):
    x, _ = random_problem(g, dtype)
    args = (g["k"], g["k"], g["stride"], g["padding"])
    expected = im2col_numpy(x, *args)
    got = im2col_numba(x, *args)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)       # a copy of the same numbers: exact


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(g=unfold_geometry())
def test_col2im_numba_equals_numpy_reference(dtype, g):
    x, y = random_problem(g, dtype)
    args = (g["k"], g["k"], g["stride"], g["padding"])
    expected = col2im_numpy(y, x.shape, *args)
    got = col2im_numba(y, x.shape, *args)
    assert_close(got, expected, SUM_RTOL[dtype], "col2im numba vs numpy")


def test_plain_python_loops_of_the_numba_kernels_match_numpy():
    """The un-jitted functions are what a student steps through with NUMBA_DISABLE_JIT=1."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4))
    k, stride, padding = 3, 2, 1
    cols = np.empty_like(im2col_numpy(x, k, k, stride, padding))
    numba_loops._im2col(x, k, k, stride, padding, cols)
    np.testing.assert_array_equal(cols, im2col_numpy(x, k, k, stride, padding))

    dx = np.empty_like(x)
    numba_loops._col2im(cols, k, k, stride, padding, dx)
    assert_close(dx, col2im_numpy(cols, x.shape, k, k, stride, padding), 1e-12, "col2im loops")


# the readable unfold (what the textbook calls) and its compiled twin (what the engine calls)
UNFOLDS = {"numpy": (im2col_numpy, col2im_numpy), "numba": (im2col_numba, col2im_numba)}


@pytest.mark.parametrize("unfold", UNFOLDS)
def test_im2col_accepts_a_non_contiguous_view(unfold):
    """A transposed view (strides not in C order) unfolds like its contiguous copy."""
    im2col, _ = UNFOLDS[unfold]
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 9)).transpose(0, 1, 3, 2)
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(im2col(x, 3, 3, 2, 1), im2col(np.ascontiguousarray(x), 3, 3, 2, 1))


# ----- 2. col2im is the adjoint (transpose) of im2col -----------------------------------------
@pytest.mark.parametrize("unfold", UNFOLDS)
@EXAMPLES
@given(g=unfold_geometry())
def test_col2im_is_the_adjoint_of_im2col(unfold, g):
    """<im2col(x), y> = <x, col2im(y)>: the one line that catches most col2im bugs."""
    x, y = random_problem(g, np.float64)
    args = (g["k"], g["k"], g["stride"], g["padding"])
    im2col, col2im = UNFOLDS[unfold]
    cols = im2col(x, *args)
    dx = col2im(y, x.shape, *args)
    lhs = np.vdot(cols, y)
    rhs = np.vdot(x, dx)
    # both sides are sums of the same products; rounding is bounded by |cols|·|y| (Cauchy-Schwarz)
    bound = 1e-12 * np.linalg.norm(cols) * np.linalg.norm(y) + 1e-300
    assert abs(lhs - rhs) <= bound, f"<im2col(x), y> = {lhs!r} but <x, col2im(y)> = {rhs!r}"


def test_conv2d_naive_on_a_worked_example():
    """A 2x2 kernel of ones sums each 2x2 window; the bias is added once per output."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)          # [[0 1 2] [3 4 5] [6 7 8]]
    weight = np.ones((1, 1, 2, 2))
    y = conv2d_naive(x, weight, bias=np.array([10.0]))
    np.testing.assert_array_equal(y, [[[[0 + 1 + 3 + 4 + 10, 1 + 2 + 4 + 5 + 10],
                                        [3 + 4 + 6 + 7 + 10, 4 + 5 + 7 + 8 + 10]]]])


# ----- 3. convolution three ways --------------------------------------------------------------
@st.composite
def conv_config(draw) -> dict:
    """A Conv2d with groups 1, 2, 4 or depthwise (groups = in_channels), kernel 1, 3 or 7."""
    grouping = draw(st.sampled_from(["1", "2", "4", "depthwise"]))
    if grouping == "depthwise":
        in_channels = draw(st.integers(1, 6))
        groups = in_channels
        out_channels = in_channels * draw(st.integers(1, 2))      # depth multiplier
    else:
        groups = int(grouping)
        in_channels = groups * draw(st.integers(1, 2))
        out_channels = groups * draw(st.integers(1, 2))
    k = draw(st.sampled_from([1, 3, 7]))
    padding = draw(st.integers(0, 3))
    smallest = max(1, k - 2 * padding)
    return dict(
        in_channels=in_channels, out_channels=out_channels, kernel_size=k,
        stride=draw(st.integers(1, 3)), padding=padding, groups=groups,
        bias=draw(st.booleans()),
        N=draw(st.integers(1, 3)), H=draw(st.integers(smallest, 12)),
        W=draw(st.integers(smallest, 12)), seed=draw(st.integers(0, 2**32 - 1)),
    )


def build_conv(c: dict) -> tuple[Conv2d, np.ndarray]:
    """A float64 Conv2d with random weights and bias, and a random input for it."""
    rng = np.random.default_rng(c["seed"])
    conv = Conv2d(c["in_channels"], c["out_channels"], c["kernel_size"], stride=c["stride"],
                  padding=c["padding"], groups=c["groups"], bias=c["bias"], dtype=np.float64)
    conv.weight.data = rng.standard_normal(conv.weight.shape)
    if conv.bias is not None:
        conv.bias.data = rng.standard_normal(conv.bias.shape)
    x = rng.standard_normal((c["N"], c["in_channels"], c["H"], c["W"]))
    return conv, x


@EXAMPLES
@given(c=conv_config())
def test_conv2d_forward_matches_naive_loops_on_both_engines(c):
    conv, x = build_conv(c)
    bias = conv.bias.data if conv.bias is not None else None
    expected = conv2d_naive(x, conv.weight.data, bias, c["stride"], c["padding"], c["groups"])
    for engine in ENGINES:
        with use_engine(engine):
            y = conv(x)
        assert_close(y, expected, 1e-12, f"Conv2d forward ({engine} engine) vs conv2d_naive, {c}")


@EXAMPLES
@given(c=conv_config())
def test_conv2d_backward_is_the_same_on_both_engines(c):
    conv, x = build_conv(c)
    H_out = conv_output_size(c["H"], c["kernel_size"], c["stride"], c["padding"])
    W_out = conv_output_size(c["W"], c["kernel_size"], c["stride"], c["padding"])
    dy = np.random.default_rng(c["seed"] + 1).standard_normal((c["N"], c["out_channels"],
                                                               H_out, W_out))
    grads = {}
    for engine in ENGINES:
        conv.zero_grad()
        with use_engine(engine):
            conv(x)
            grads[engine] = {"dx": conv.backward(dy), "dW": conv.weight.grad.copy()}
        if conv.bias is not None:
            grads[engine]["db"] = conv.bias.grad.copy()
    for name, expected in grads["reference"].items():
        assert_close(grads["fast"][name], expected, 1e-12, f"Conv2d {name}: fast vs reference, {c}")


# ----- pooling unfolds with the same kernels --------------------------------------------------
@st.composite
def pool_config(draw) -> dict:
    k = draw(st.sampled_from([1, 2, 3, 5]))
    padding = draw(st.integers(0, k // 2))          # PyTorch's rule: padding <= kernel / 2
    smallest = max(1, k - 2 * padding)
    return dict(
        kernel_size=k, stride=draw(st.integers(1, 3)), padding=padding,
        ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
        N=draw(st.integers(1, 3)), C=draw(st.integers(1, 4)),
        H=draw(st.integers(smallest, 12)), W=draw(st.integers(smallest, 12)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def run_both_engines(layer, x: np.ndarray, dy_seed: int) -> dict:
    """{engine: (y, dx)} for one forward and one backward on each engine."""
    results = {}
    for engine in ENGINES:
        with use_engine(engine):
            y = layer(x)
            dy = np.random.default_rng(dy_seed).standard_normal(y.shape)
            results[engine] = (y, layer.backward(dy))
    return results


@EXAMPLES
@given(c=pool_config())
def test_maxpool2d_is_the_same_on_both_engines(c):
    layer = MaxPool2d(c["kernel_size"], c["stride"], c["padding"])
    x = np.random.default_rng(c["seed"]).standard_normal((c["N"], c["C"], c["H"], c["W"]))
    results = run_both_engines(layer, x, c["seed"] + 1)
    (y_numba, dx_numba), (y_numpy, dx_numpy) = results["fast"], results["reference"]
    np.testing.assert_array_equal(y_numba, y_numpy)
    assert_close(dx_numba, dx_numpy, 1e-12, f"MaxPool2d dx: fast vs reference, {c}")


@EXAMPLES
@given(c=pool_config())
def test_avgpool2d_is_the_same_on_both_engines(c):
    layer = AvgPool2d(c["kernel_size"], c["stride"], c["padding"], ceil_mode=c["ceil_mode"],
                      count_include_pad=c["count_include_pad"])
    x = np.random.default_rng(c["seed"]).standard_normal((c["N"], c["C"], c["H"], c["W"]))
    results = run_both_engines(layer, x, c["seed"] + 1)
    (y_numba, dx_numba), (y_numpy, dx_numpy) = results["fast"], results["reference"]
    assert_close(y_numba, y_numpy, 1e-12, f"AvgPool2d y: fast vs reference, {c}")
    assert_close(dx_numba, dx_numpy, 1e-12, f"AvgPool2d dx: fast vs reference, {c}")


# ----- choosing the engine --------------------------------------------------------------------
def test_use_engine_restores_the_previous_engine_even_after_an_error():
    before = get_engine()
    with pytest.raises(RuntimeError):
        with use_engine("reference"):
            assert get_engine() == "reference"
            raise RuntimeError("boom")
    assert get_engine() == before


def test_use_engine_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="cupy"):
        use_engine("cupy")


def test_a_grouped_conv_on_the_fast_engine_stays_right_when_shapes_change():
    # the NCHW im2col path with the compiled unfold: the one grouped convolutions take
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=2).to(np.float64)
    rng = np.random.default_rng(5)
    for shape in [(2, 4, 6, 6), (2, 4, 6, 6), (3, 4, 5, 7), (2, 4, 6, 6)]:
        x = rng.standard_normal(shape)
        expected = conv2d_naive(x, conv.weight.data, conv.bias.data, 1, 1, 2)
        np.testing.assert_allclose(conv(x), expected, rtol=1e-12, atol=1e-12)
