"""kernels/winograd.py: F(2×2, 3×3) computes the convolution, and its fast kernels the definition.

1. The NumPy definition (conv3x3_reference, one einsum per equation) is the naive conv.
2. Each Numba transform is its matrix: U = G g Gᵀ, V = Bᵀ d B, Y = Aᵀ m A.
3. The fast conv equals the definition in float64 on random shapes (odd sizes, one pixel,
   several groups of images, 1-3 workers), with bias and epilogue, and agrees with im2col's
   route to float32 rounding; conv2d_forward takes it exactly for the convs `applies` names.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpy_resnet.kernels import conv2d_naive, conv_nhwc, threads, winograd

EXAMPLES = settings(max_examples=30, deadline=None)
# the fixtures below set module state once per test, the same for every example: safe to share
WITH_FIXTURES = settings(EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def shapes(draw) -> dict:
    return dict(N=draw(st.integers(1, 5)), C=draw(st.integers(1, 7)), C_out=draw(st.integers(1, 6)),
                H=draw(st.integers(1, 9)), W=draw(st.integers(1, 9)),
                seed=draw(st.integers(0, 2**32 - 1)))


def random_conv(s: dict, dtype=np.float64):
    rng = np.random.default_rng(s["seed"])
    x = rng.standard_normal((s["N"], s["C"], s["H"], s["W"])).astype(dtype)
    w = rng.standard_normal((s["C_out"], s["C"], 3, 3)).astype(dtype)
    return x, w


@EXAMPLES
@given(s=shapes())
def test_the_definition_in_numpy_is_the_convolution(s):
    x, w = random_conv(s)
    np.testing.assert_allclose(winograd.conv3x3_reference(x, w), conv2d_naive(x, w, None, 1, 1),
                               rtol=1e-12, atol=1e-12)


def test_each_transform_is_its_matrix():
    rng = np.random.default_rng(0)
    C, C_out, H, W = 3, 4, 4, 6
    g = rng.standard_normal((C_out, C, 3, 3))
    U = winograd.transformed_weight(g)                              # (16, C_out, C_in)
    expected_U = np.einsum("ai,ocij,bj->aboc", winograd.G, g, winograd.G).reshape(16, C_out, C)
    np.testing.assert_allclose(U, expected_U, rtol=1e-14, atol=1e-14)

    x = rng.standard_normal((1, H, W, C))
    x_split = np.full((1, H + 2, 2, W // 2 + 1, C), np.nan)
    winograd._split_columns(x, 0, 1, 1, x_split)
    x_pad = x_split.transpose(0, 1, 3, 2, 4).reshape(1, H + 2, W + 2, C)   # columns interleaved
    np.testing.assert_array_equal(x_pad[0, 1:-1, 1:-1], x[0])
    assert not x_pad[0, [0, -1]].any() and not x_pad[0, :, [0, -1]].any()
    tiles = (H // 2) * (W // 2)
    V_buffer, V = winograd._planes(0, "test V", tiles, C, np.float64)
    winograd._transform_input(x_split, 1, winograd.TERM_ROWS, winograd.TERM_COLS,
                              winograd.TERM_SIGNS, V_buffer)
    for t in range(tiles):
        t_y, t_x = divmod(t, W // 2)
        d = x_pad[0, 2 * t_y:2 * t_y + 4, 2 * t_x:2 * t_x + 4]     # (4, 4, C)
        expected_V = np.einsum("ai,ijc,bj->abc", winograd.B_T, d, winograd.B_T).reshape(16, C)
        np.testing.assert_allclose(V[:, t], expected_V, rtol=1e-14, atol=1e-14)

    M_buffer, M = winograd._planes(0, "test M", tiles, C_out, np.float64)
    M[...] = rng.standard_normal(M.shape)
    y = np.full((1, H, W, C_out), np.nan)
    winograd._transform_output(M_buffer, 0, 1, np.empty((8, W // 2 * C_out)), y)
    for t in range(tiles):
        t_y, t_x = divmod(t, W // 2)
        m = M[:, t].reshape(4, 4, C_out)
        expected_Y = np.einsum("ia,abo,jb->ijo", winograd.A_T, m, winograd.A_T)
        np.testing.assert_allclose(y[0, 2 * t_y:2 * t_y + 2, 2 * t_x:2 * t_x + 2], expected_Y,
                                   rtol=1e-14, atol=1e-14)


def test_the_term_tables_are_the_nonzeros_of_the_kronecker_product():
    kron = np.zeros((16, 4, 4))
    for p in range(16):
        for a, b, sign in zip(winograd.TERM_ROWS[p], winograd.TERM_COLS[p], winograd.TERM_SIGNS[p],
                              strict=True):
            kron[p, a, b] += sign
    np.testing.assert_array_equal(kron.reshape(16, 16), np.kron(winograd.B_T, winograd.B_T))


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n} workers")
def workers(request):
    before = threads.get_num_threads()
    threads.set_num_threads(request.param)
    yield request.param
    threads.set_num_threads(before)


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of an image or two, so that a worker's images take several groups."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd, "MIN_TILES", 5)


@WITH_FIXTURES
@given(s=shapes(), bias=st.booleans())
def test_the_fast_conv_equals_the_definition_in_float64(s, bias, workers, small_groups):
    x, w = random_conv(s)
    b = np.random.default_rng(s["seed"] + 1).standard_normal(s["C_out"]) if bias else None
    seen = np.zeros(s["N"] * s["H"] * s["W"], int)

    def epilogue(y_rows, a, b_):                             # sees each row once, bias added
        seen[a:b_] += 1
        y_rows *= 2
    y = winograd.conv3x3_forward(conv_nhwc.to_nhwc(x), w, b, epilogue)
    expected = winograd.conv3x3_reference(x, w) + (0 if b is None else b[:, None, None])
    assert y.shape == (s["N"], s["H"], s["W"], s["C_out"]) and y.dtype == x.dtype
    np.testing.assert_allclose(conv_nhwc.from_nhwc(y), 2 * expected, rtol=1e-12,
                               atol=1e-12 * max(1, np.abs(expected).max()))
    np.testing.assert_array_equal(seen, 1)


def test_in_float32_it_agrees_with_im2col_to_float32_rounding(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 40, 10, 9)).astype(np.float32)
    w = (rng.standard_normal((48, 40, 3, 3)) / 20).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    assert winograd.applies(w, 1, 1)
    y = conv_nhwc.conv2d_forward(x, w, b, 1, 1)
    monkeypatch.setattr(winograd, "ENABLED", False)
    by_im2col = conv_nhwc.conv2d_forward(x, w, b, 1, 1)
    assert y.dtype == np.float32 and conv_nhwc.is_channels_last(y)
    np.testing.assert_allclose(y, by_im2col, rtol=1e-5, atol=1e-5 * np.abs(by_im2col).max())
    assert not np.array_equal(y, by_im2col)                 # the other route was really taken


def test_the_route_is_taken_for_3x3_stride_1_padding_1_convs_with_enough_channels(monkeypatch):
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 8)
    wide, narrow = np.zeros((8, 8, 3, 3)), np.zeros((8, 4, 3, 3))
    assert winograd.applies(wide, 1, 1)
    assert not winograd.applies(narrow, 1, 1) and not winograd.applies(narrow.transpose(1, 0, 2, 3), 1, 1)
    assert not winograd.applies(wide, 2, 1) and not winograd.applies(wide, 1, 0)
    assert not winograd.applies(np.zeros((8, 8, 1, 1)), 1, 0)
    assert not winograd.applies(np.zeros((8, 8, 5, 5)), 1, 1)
    monkeypatch.setattr(winograd, "ENABLED", False)
    assert not winograd.applies(wide, 1, 1)


def reference_backward(x, w, dy, need_bias=True):
    """The im2col route's gradients (winograd off): (dx, dW, db)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "ENABLED", False)
        return conv_nhwc.conv2d_backward(x, w, dy, 1, 1, need_bias)


@WITH_FIXTURES
@given(s=shapes(), bias=st.booleans())
def test_the_backward_equals_the_convolutions_gradients_in_float64(s, bias, workers, small_groups):
    x, w = random_conv(s)
    dy = np.random.default_rng(s["seed"] + 2).standard_normal((s["N"], s["C_out"], s["H"], s["W"]))
    dx, dW, db = winograd.conv3x3_backward(conv_nhwc.to_nhwc(x), conv_nhwc.to_nhwc(dy), w, bias)
    expected_dx, expected_dW, expected_db = reference_backward(x, w, dy, bias)
    for name, got, want in (("dx", conv_nhwc.from_nhwc(dx), expected_dx), ("dW", dW, expected_dW)):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * max(1, np.abs(want).max()),
                                   err_msg=f"{name}, {s}")
    if bias:
        np.testing.assert_allclose(db, expected_db, rtol=1e-12)
    else:
        assert db is None
    no_dx, dW_only, _ = winograd.conv3x3_backward(conv_nhwc.to_nhwc(x), conv_nhwc.to_nhwc(dy), w,
                                                  bias, need_input_grad=False)
    assert no_dx is None
    np.testing.assert_array_equal(dW_only, dW)


def test_conv2d_backward_takes_the_route_in_float32_to_float32_rounding():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 24, 9, 8)).astype(np.float32)
    w = (rng.standard_normal((20, 24, 3, 3)) / 15).astype(np.float32)
    dy = rng.standard_normal((5, 20, 9, 8)).astype(np.float32)
    assert winograd.applies(w, 1, 1)
    got = conv_nhwc.conv2d_backward(x, w, dy, 1, 1, True)
    expected = reference_backward(x, w, dy)
    for name, a, b in zip(("dx", "dW", "db"), got, expected, strict=True):
        assert a.dtype == np.float32, name
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max(), err_msg=name)
    assert not np.array_equal(got[1], expected[1])          # the other route was really taken
    assert conv_nhwc.is_channels_last(got[0])
