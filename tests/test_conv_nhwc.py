"""The fast convolution (kernels/conv_nhwc.py) against the readable one, piece by piece.

1. `_im2col_rows` is im2col_numpy.py's unfold with rows and columns swapped and the columns
   in (i, j, c) order, for any chunk of rows; `_col2im_rows` is its adjoint.
2. conv2d_forward / conv2d_backward give the reference Conv2d's y, dx, dW and db on random
   shapes, for every input memory layout, and the same numbers with 1 or 2 workers.
3. Layout helpers: the outputs are channels-last views, and nothing is copied when the
   input already is.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_resnet import nn, use_engine
from numpy_resnet.kernels import conv_nhwc, threads
from numpy_resnet.kernels.im2col_numpy import col2im_numpy, conv_output_size, im2col_numpy

EXAMPLES = settings(max_examples=40, deadline=None)


@st.composite
def geometry(draw) -> dict:
    k = draw(st.sampled_from([1, 2, 3, 5, 7]))
    padding = draw(st.integers(0, 3))
    smallest = max(1, k - 2 * padding)
    return dict(N=draw(st.integers(1, 4)), C=draw(st.integers(1, 6)), C_out=draw(st.integers(1, 5)),
                H=draw(st.integers(smallest, 11)), W=draw(st.integers(smallest, 11)), k=k,
                stride=draw(st.integers(1, 3)), padding=padding, bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**32 - 1)))


def nhwc_cols_from_reference(x: np.ndarray, k: int, stride: int, padding: int) -> np.ndarray:
    """im2col_numpy's (C·k·k, rows) matrix, turned into the fast kernel's (rows, (i, j, c))."""
    C = x.shape[1]
    cols = im2col_numpy(x, k, k, stride, padding)               # rows (c, i, j)
    return cols.reshape(C, k, k, -1).transpose(3, 1, 2, 0).reshape(-1, k * k * C)


@EXAMPLES
@given(g=geometry(), cut=st.floats(0, 1))
def test_im2col_rows_is_the_reference_unfold_transposed_for_any_chunk_of_rows(g, cut):
    x = np.random.default_rng(g["seed"]).standard_normal((g["N"], g["C"], g["H"], g["W"]))
    expected = nhwc_cols_from_reference(x, g["k"], g["stride"], g["padding"])
    r0 = int(cut * (len(expected) - 1))                         # a chunk that starts anywhere
    got = np.empty((len(expected) - r0, expected.shape[1]))
    conv_nhwc._im2col_rows(conv_nhwc.to_nhwc(x), g["k"], g["stride"], g["padding"], r0,
                           len(expected), got)
    np.testing.assert_array_equal(got, expected[r0:])


@pytest.mark.parametrize("C", [conv_nhwc.SPAN_MAX_CHANNELS, conv_nhwc.SPAN_MAX_CHANNELS + 3])
@pytest.mark.parametrize("k, stride, padding", [(3, 1, 1), (3, 2, 1), (7, 2, 3), (2, 1, 0)])
def test_im2col_rows_on_both_sides_of_the_one_run_copy(C, k, stride, padding):
    """Up to SPAN_MAX_CHANNELS a kernel row is copied as one run, above it tap by tap."""
    x = np.random.default_rng(C + k).standard_normal((2, C, 9, 10))
    expected = nhwc_cols_from_reference(x, k, stride, padding)
    got = np.empty_like(expected)
    conv_nhwc._im2col_rows(conv_nhwc.to_nhwc(x), k, stride, padding, 0, len(expected), got)
    np.testing.assert_array_equal(got, expected)


@EXAMPLES
@given(g=geometry())
def test_col2im_rows_is_the_adjoint_of_im2col_rows_and_equals_the_reference(g):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["N"], g["C"], g["H"], g["W"]))
    rows = conv_output_size(g["H"], g["k"], g["stride"], g["padding"]) * \
        conv_output_size(g["W"], g["k"], g["stride"], g["padding"]) * g["N"]
    dcols = rng.standard_normal((rows, g["k"] ** 2 * g["C"]))
    x_nhwc, cols = conv_nhwc.to_nhwc(x), np.empty_like(dcols)
    conv_nhwc._im2col_rows(x_nhwc, g["k"], g["stride"], g["padding"], 0, rows, cols)
    dx = np.zeros_like(x_nhwc)
    conv_nhwc._col2im_rows(dcols, g["k"], g["stride"], g["padding"], 0, rows, dx)
    # <im2col(x), dcols> = <x, col2im(dcols)>
    np.testing.assert_allclose(np.vdot(cols, dcols), np.vdot(x_nhwc, dx), rtol=1e-12)
    reference_dcols = dcols.reshape(rows, g["k"], g["k"], g["C"]).transpose(3, 1, 2, 0).reshape(
        g["C"] * g["k"] ** 2, rows)
    expected = col2im_numpy(reference_dcols, x.shape, g["k"], g["k"], g["stride"], g["padding"])
    np.testing.assert_allclose(conv_nhwc.from_nhwc(dx), expected, rtol=1e-12, atol=1e-12)


def reference_conv(g: dict, x: np.ndarray, dy_seed: int):
    """The readable Conv2d (reference engine): y, dx, dW, db, and the layer itself."""
    conv = nn.Conv2d(g["C"], g["C_out"], g["k"], stride=g["stride"], padding=g["padding"],
                     bias=g["bias"]).to(x.dtype)
    rng = np.random.default_rng(dy_seed)
    conv.weight.data = rng.standard_normal(conv.weight.shape).astype(x.dtype)
    if conv.bias is not None:
        conv.bias.data = rng.standard_normal(conv.bias.shape).astype(x.dtype)
    with use_engine("reference"):
        y = conv(x)
        dy = rng.standard_normal(y.shape).astype(x.dtype)
        dx = conv.backward(dy)
    db = conv.bias.grad.copy() if conv.bias is not None else None
    return conv, dy, (y, dx, conv.weight.grad.copy(), db)


LAYOUTS = {
    "C order": lambda a: np.ascontiguousarray(a),
    "channels-last": lambda a: conv_nhwc.from_nhwc(conv_nhwc.to_nhwc(a)),
    "a strided view": lambda a: np.repeat(a, 2, axis=3)[..., ::2],
}


# stride-1 backward by the flipped-kernel conv up to FLIPPED_MAX_CHANNELS output channels, col2im above
DX_ROUTES = {"flipped kernel": 10**6, "col2im": 0}


@pytest.mark.parametrize("dx_route", DX_ROUTES)
@pytest.mark.parametrize("layout", LAYOUTS)
@EXAMPLES
@given(g=geometry())
def test_fast_forward_and_backward_equal_the_reference_conv2d_in_float64(layout, dx_route, g):
    x = np.random.default_rng(g["seed"]).standard_normal((g["N"], g["C"], g["H"], g["W"]))
    conv, dy, (y, dx, dW, db) = reference_conv(g, x, g["seed"] + 1)
    x, dy = LAYOUTS[layout](x), LAYOUTS[layout](dy)
    bias = conv.bias.data if conv.bias is not None else None
    got_y = conv_nhwc.conv2d_forward(x, conv.weight.data, bias, g["stride"], g["padding"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_nhwc, "FLIPPED_MAX_CHANNELS", DX_ROUTES[dx_route])
        got_dx, got_dW, got_db = conv_nhwc.conv2d_backward(x, conv.weight.data, dy, g["stride"],
                                                           g["padding"], need_bias=g["bias"])
    for name, got, expected in (("y", got_y, y), ("dx", got_dx, dx), ("dW", got_dW, dW)):
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max(),
                                   err_msg=f"{name}, {g}")
    if g["bias"]:   # a sum of N·H·W terms: its rounding is relative to the largest sums, not to itself
        np.testing.assert_allclose(got_db, db, rtol=1e-11, atol=1e-11 * np.abs(db).max())
    else:
        assert got_db is None
    assert conv_nhwc.is_channels_last(got_y) and conv_nhwc.is_channels_last(got_dx)


def test_fast_conv_in_float32_agrees_with_the_reference_to_float32_rounding():
    g = dict(N=8, C=16, C_out=32, H=12, W=12, k=3, stride=1, padding=1, bias=True)
    x = np.random.default_rng(1).standard_normal((8, 16, 12, 12)).astype(np.float32)
    conv, dy, expected = reference_conv(g, x, 2)
    y = conv_nhwc.conv2d_forward(x, conv.weight.data, conv.bias.data, 1, 1)
    dx, dW, db = conv_nhwc.conv2d_backward(x, conv.weight.data, dy, 1, 1, need_bias=True)
    for name, got, want in zip(("y", "dx", "dW", "db"), (y, dx, dW, db), expected, strict=True):
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max(), err_msg=name)


def test_one_worker_and_two_workers_compute_the_same_convolution():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5, 9, 9))
    w = rng.standard_normal((4, 5, 3, 3))
    dy = {2: rng.standard_normal((6, 4, 5, 5)), 1: rng.standard_normal((6, 4, 9, 9))}
    results = []
    before = threads.get_num_threads()
    try:
        for n in (1, 2, 3):
            threads.set_num_threads(n)
            for stride in (2, 1):                   # backward by col2im, by the flipped kernel
                y = conv_nhwc.conv2d_forward(x, w, None, stride, 1)
                dx, dW, _ = conv_nhwc.conv2d_backward(x, w, dy[stride], stride, 1, need_bias=False)
                results.append((y, dx, dW))
    finally:
        threads.set_num_threads(before)
    # the chunks, and so BLAS's blocking and dW's partial sums, change with the worker count:
    # the numbers agree to rounding
    for i, (y, dx, dW) in enumerate(results[2:], start=2):
        for got, expected in zip((y, dx, dW), results[i % 2], strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13 * np.abs(expected).max())


def test_a_channels_last_input_is_read_in_place_and_an_nchw_one_is_copied_once():
    x_nhwc = np.random.default_rng(4).standard_normal((2, 5, 5, 3))
    x = conv_nhwc.from_nhwc(x_nhwc)
    assert x.shape == (2, 3, 5, 5) and conv_nhwc.is_channels_last(x)
    assert conv_nhwc.to_nhwc(x) is not None and np.shares_memory(conv_nhwc.to_nhwc(x), x_nhwc)
    nchw = np.ascontiguousarray(x)
    assert not conv_nhwc.is_channels_last(nchw) and not np.shares_memory(conv_nhwc.to_nhwc(nchw), nchw)


def test_weight_matrix_orders_its_columns_like_the_rows_of_cols():
    w = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    w_mat = conv_nhwc.weight_matrix(w)
    assert w_mat[1, (1 * 2 + 0) * 3 + 2] == w[1, 2, 1, 0]       # column (i, j, c) = (1, 0, 2)
    np.testing.assert_array_equal(conv_nhwc.weight_from_matrix(w_mat, w.shape), w)


def test_flipped_weight_turns_the_kernel_and_swaps_its_channels():
    w = np.random.default_rng(5).standard_normal((4, 3, 3, 3))
    flipped = conv_nhwc.flipped_weight(w)
    assert flipped.shape == (3, 4, 3, 3)
    assert flipped[2, 1, 0, 2] == w[1, 2, 2, 0]
