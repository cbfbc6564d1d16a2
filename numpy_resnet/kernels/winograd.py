"""Winograd's minimal filtering F(2×2, 3×3): a 3x3 stride-1 conv with 2.25x fewer multiplications.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). For one input
channel and one output channel, a 2×2 tile Y of the output needs the 4×4 tile d of the padded
input under it and the 3×3 kernel g:

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A              (⊙: elementwise, 16 multiplications)

where direct convolution takes 2·2·9 = 36. The tiles overlap by 2 (tile (t_y, t_x) starts at
padded row 2·t_y, column 2·t_x). Summed over the input channels c, the 16 elementwise products
become 16 matrix products, one per position p = 4ξ + ν of the 4×4 tile:

    U[p] = (G g Gᵀ)[ξ, ν]   (C_out, C_in)    the kernels, transformed once per call
    V[p] = (Bᵀ d B)[ξ, ν]   (tiles, C_in)    every tile of the input
    M[p] = V[p] · U[p]ᵀ     (tiles, C_out)   16 GEMMs, 16·C_in·C_out MACs per tile
    Y    = Aᵀ M A           per tile          back to its 2×2 outputs

im2col + GEMM costs 2·2·9·C_in·C_out MACs for the same four outputs: 2.25 times more. The
transforms are only additions (and halvings in G), so they cost little next to the GEMMs
once C_in and C_out are a few tens.

The code. `conv3x3_reference` is the definition above in NumPy, one einsum per equation;
tests check it against the naive convolution and the fast version against it. The fast
version is conv_nhwc.py's pattern: channels-last memory, each worker takes whole images and
walks through them a few images at a time, so that V and M of one group fit in the cache:

    split    copy the group's images into a zero border, even and odd columns apart
    V        one pass over the tiles, a tile row at a time (_transform_input)
    M        16 GEMMs
    Y        one pass over M (_transform_output), then the caller's epilogue on those rows

Vector loops. Numba (LLVM) turns a loop into SIMD instructions only if it can see that the
loop's stores do not feed its loads. The transforms are written so that it can: each inner
loop writes one array and indexes every array by the loop counter alone (slices taken
before the loop), and a tile row's values are one run of memory. Written pixel by pixel,
with 16 stores per loop, the same transforms run scalar, several times slower.

Rounding. The transforms add and subtract up to 9 values, so the result differs from
im2col's in the last bits: in float32 about 1e-6 of the largest output, in float64 about
1e-15 (tests/test_winograd.py).

Backward (conv3x3_backward). Every step above is linear, so the gradients run the same
steps backwards: dY's tiles transformed like V's (dM = A dY Aᵀ), 16 GEMMs for dU and 16
for dV, then dx = B dV Bᵀ added back where each tile came from and dW = Gᵀ dU G: the
2.25x fewer multiplications again, so the backward too beats the im2col routes.
"""

from __future__ import annotations

import numba
import numpy as np

from .threads import add_product, parallel, scratch, sum_over_workers

# ----- the three matrices (Lavin & Gray, section 4.1) ------------------------------------
B_T = np.array([[1, 0, -1, 0],
                [0, 1, 1, 0],
                [0, -1, 1, 0],
                [0, 1, 0, -1]], dtype=np.float64)           # input tile  d -> Bᵀ d B
G = np.array([[1, 0, 0],
              [0.5, 0.5, 0.5],
              [0.5, -0.5, 0.5],
              [0, 0, 1]], dtype=np.float64)                 # kernel      g -> G g Gᵀ
A_T = np.array([[1, 1, 1, 0],
                [0, 1, -1, -1]], dtype=np.float64)          # product     m -> Aᵀ m A

# Which convs take this route (conv_nhwc.conv2d_forward and conv2d_backward ask `applies`).
ENABLED = True
# from 16 channels up Winograd beats im2col + GEMM, forward and backward (docs/performance.md)
MIN_CHANNELS = 16
# A group of images per GEMM: V and M of about this many bytes. 2 MiB: the two workers share
# the L3 cache and the memory bus, so a group leaves room for the other worker's; below 2 MiB
# the GEMMs get short (docs/performance.md).
CHUNK_BYTES = 2 << 20
MIN_TILES = 256                 # a GEMM with fewer rows (tiles) than this runs well below peak
# Each of the 16 planes of V and M is padded by PLANE_PAD values: planes a multiple of 4 KiB
# apart slow a conv down, the CPU confusing stores to one plane with loads from another
# ("4K aliasing").
PLANE_PAD = 16


def applies(weight: np.ndarray, stride: int, padding: int) -> bool:
    """Does a conv with this weight (C_out, C_in, k, k), stride and padding take this route?"""
    C_out, C_in, kh, kw = weight.shape
    return (ENABLED and kh == kw == 3 and stride == 1 and padding == 1
            and min(C_in, C_out) >= MIN_CHANNELS)


def tiles(H: int, W: int) -> tuple[int, int]:
    """Output tiles down and across: 2×2 each, the last row/column of tiles cut off if odd."""
    return (H + 1) // 2, (W + 1) // 2


# ----- the definition, in NumPy ------------------------------------------------------------
def conv3x3_reference(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """x: (N, C_in, H, W), weight: (C_out, C_in, 3, 3) -> y: (N, C_out, H, W); stride 1, padding 1."""
    N, C, H, W = x.shape
    t_h, t_w = tiles(H, W)
    # padded by 1, and by one more row/column at the end if H/W is odd: every tile is whole
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 2 * t_h + 1 - H), (1, 2 * t_w + 1 - W)))
    d = np.lib.stride_tricks.sliding_window_view(x_pad, (4, 4), axis=(2, 3))[:, :, ::2, ::2]
    # d: (N, C_in, t_h, t_w, 4, 4), the input tiles
    U = np.einsum("ai,ocij,bj->abco", G, weight, G)          # G g Gᵀ: (4, 4, C_in, C_out)
    V = np.einsum("ai,nctsij,bj->nctsab", B_T, d, B_T)       # Bᵀ d B: (N, C_in, t_h, t_w, 4, 4)
    M = np.einsum("nctsab,abco->notsab", V, U)               # Σ_c, elementwise in (a, b)
    Y = np.einsum("ia,notsab,jb->notsij", A_T, M, A_T)       # Aᵀ M A: (N, C_out, t_h, t_w, 2, 2)
    y = Y.transpose(0, 1, 2, 4, 3, 5).reshape(N, -1, 2 * t_h, 2 * t_w)
    return y[:, :, :H, :W].astype(x.dtype)


# ----- the kernels: plain Python loops, compiled by Numba ---------------------------------
def _transform_weight(weight, k0, k1, U):
    """U[4ξ + ν, o, c] = (G g Gᵀ)[ξ, ν] for g = weight[o, c] and k0 <= o < k1.  U: (16, C_out, C_in)."""
    C_in = weight.shape[1]
    for o in range(k0, k1):
        for c in range(C_in):
            g = weight[o, c]
            # a = G g: (4, 3), row by row
            a00, a01, a02 = g[0, 0], g[0, 1], g[0, 2]
            a10 = (g[0, 0] + g[1, 0] + g[2, 0]) * 0.5
            a11 = (g[0, 1] + g[1, 1] + g[2, 1]) * 0.5
            a12 = (g[0, 2] + g[1, 2] + g[2, 2]) * 0.5
            a20 = (g[0, 0] - g[1, 0] + g[2, 0]) * 0.5
            a21 = (g[0, 1] - g[1, 1] + g[2, 1]) * 0.5
            a22 = (g[0, 2] - g[1, 2] + g[2, 2]) * 0.5
            a30, a31, a32 = g[2, 0], g[2, 1], g[2, 2]
            # U = a Gᵀ: (4, 4), the same combination along each row
            U[0, o, c], U[1, o, c] = a00, (a00 + a01 + a02) * 0.5
            U[2, o, c], U[3, o, c] = (a00 - a01 + a02) * 0.5, a02
            U[4, o, c], U[5, o, c] = a10, (a10 + a11 + a12) * 0.5
            U[6, o, c], U[7, o, c] = (a10 - a11 + a12) * 0.5, a12
            U[8, o, c], U[9, o, c] = a20, (a20 + a21 + a22) * 0.5
            U[10, o, c], U[11, o, c] = (a20 - a21 + a22) * 0.5, a22
            U[12, o, c], U[13, o, c] = a30, (a30 + a31 + a32) * 0.5
            U[14, o, c], U[15, o, c] = (a30 - a31 + a32) * 0.5, a32


# V = Bᵀ d B entry by entry: V[p] = Σ_(a, b) (Bᵀ ⊗ Bᵀ)[p, (a, b)] · d[a, b], and each row of
# Bᵀ ⊗ Bᵀ has four nonzeros, all ±1: the tile rows a, columns b and signs of V[p]'s four terms
_TERMS = [[(a, b, B_T[xi, a] * B_T[nu, b]) for a in range(4) for b in range(4)
           if B_T[xi, a] * B_T[nu, b] != 0] for xi in range(4) for nu in range(4)]
TERM_ROWS = np.array([[a for a, _, _ in terms] for terms in _TERMS])          # (16, 4)
TERM_COLS = np.array([[b for _, b, _ in terms] for terms in _TERMS])          # (16, 4)
TERM_SIGNS = np.array([[sign for _, _, sign in terms] for terms in _TERMS])   # (16, 4)

# The backward's dM = A dY Aᵀ (dY's 2×2 tile -> 4×4), entry by entry in the same form: 1, 2 or
# 4 nonzero terms (a column of Aᵀ has one or two), padded to four with terms of sign 0
_DY_TERMS = [[(i, j, A_T[i, xi] * A_T[j, nu]) for i in range(2) for j in range(2)
              if A_T[i, xi] * A_T[j, nu] != 0] for xi in range(4) for nu in range(4)]
_DY_TERMS = [terms + [(0, 0, 0.0)] * (4 - len(terms)) for terms in _DY_TERMS]
DY_ROWS = np.array([[i for i, _, _ in terms] for terms in _DY_TERMS])        # (16, 4)
DY_COLS = np.array([[j for _, j, _ in terms] for terms in _DY_TERMS])        # (16, 4)
DY_SIGNS = np.array([[sign for _, _, sign in terms] for terms in _DY_TERMS])  # (16, 4)


def _split_columns(x, n0, n1, offset, x_split):
    """x_split[n - n0, h, w % 2, w // 2] = x_pad[n, h, w], for images n0 <= n < n1 of x (N, H, W, C).

    x_pad is x shifted by `offset` rows and columns inside zeros: offset 1 is the conv's
    padding (one zero row/column before, one or two after: two if H/W is odd, so that the
    last tile is whole); offset 0 places dY's tiles for the backward. Even and odd columns
    are stored apart, so that column 2·t_x + b of every tile in a tile row is one run of
    memory: x_split[n, h, b % 2, t_x + b // 2] for t_x = 0, 1, ...
    x_split: (images, 2·t_h + 2, 2, t_w + 1, C).
    """
    N, H, W, C = x.shape
    for n in range(n1 - n0):
        for h in range(x_split.shape[1]):
            for w in range(2 * x_split.shape[3]):
                dst = x_split[n, h, w % 2, w // 2]
                if offset <= h < H + offset and offset <= w < W + offset:
                    src = x[n0 + n, h - offset, w - offset]
                    for c in range(C):
                        dst[c] = src[c]
                else:
                    for c in range(C):
                        dst[c] = 0


def _transform_input(x_split, images, rows, cols, signs, V):
    """V[4ξ + ν, t·C + c] = (Bᵀ d B)[ξ, ν] for each tile t = (n, t_y, t_x) of x_split[:images].

    d = x_pad[n, 2t_y : 2t_y + 4, 2t_x : 2t_x + 4, c]; V: (16, tiles·C + padding). One tile row
    at a time: its t_w·C values of V[p] are one run, and so are those of each term
    d[a, b] (x_split's layout), so the loop over them is a plain vector loop.
    """
    C, H_pad, half = x_split.shape[4], x_split.shape[1], x_split.shape[3]
    t_h, t_w = (H_pad - 2) // 2, half - 1
    run = t_w * C
    x_flat = x_split.reshape(-1)
    for n in range(images):
        for t_y in range(t_h):
            start = (n * t_h + t_y) * run                   # the tile row's first tile, times C
            for p in range(16):
                out = V[p, start:start + run]
                d0 = _term(x_flat, n, 2 * t_y + rows[p, 0], cols[p, 0], H_pad, half, C, run)
                d1 = _term(x_flat, n, 2 * t_y + rows[p, 1], cols[p, 1], H_pad, half, C, run)
                d2 = _term(x_flat, n, 2 * t_y + rows[p, 2], cols[p, 2], H_pad, half, C, run)
                d3 = _term(x_flat, n, 2 * t_y + rows[p, 3], cols[p, 3], H_pad, half, C, run)
                s0, s1, s2, s3 = signs[p, 0], signs[p, 1], signs[p, 2], signs[p, 3]
                for i in range(run):
                    out[i] = s0 * d0[i] + s1 * d1[i] + s2 * d2[i] + s3 * d3[i]


def _term(x_flat, n, h, b, H_pad, half, C, run):
    """The run of d[a, b] over a tile row: x_split[n, h, b % 2, b // 2 :][: t_w] flattened
    (a view: the backward adds dx's tile gradients into the same runs of dx_split)."""
    start = (((n * H_pad + h) * 2 + b % 2) * half + b // 2) * C
    return x_flat[start:start + run]


def _transform_output(M, n0, n1, S, y):
    """y[n, 2t_y + i, 2t_x + j, o] = (Aᵀ m A)[i, j] for the tiles of images n0 <= n < n1.

    m = M[:, t·C_out + o] as 4×4, t counting the tiles from image n0; M: (16, tiles·C_out +
    padding). y: (N, H, W, C_out); a cut-off last tile row/column (odd H/W) writes only the
    outputs that exist. S: (8, t_w·C_out) scratch. In two steps, as the equation reads:
        s = Aᵀ m    for a whole tile row at once (runs of t_w·C_out values, like V's)
        Y = s A     tile by tile, C_out values at a time
    with Aᵀ's rows (1, 1, 1, 0) and (0, 1, -1, -1).
    """
    N, H, W, C_out = y.shape
    t_h, t_w = (H + 1) // 2, (W + 1) // 2
    run = t_w * C_out
    for n in range(n0, n1):
        for t_y in range(t_h):
            start = ((n - n0) * t_h + t_y) * run
            for nu in range(4):                             # s[i, ν] = Σ_ξ Aᵀ[i, ξ] m[ξ, ν]
                m0, m1 = M[nu, start:start + run], M[4 + nu, start:start + run]
                m2, m3 = M[8 + nu, start:start + run], M[12 + nu, start:start + run]
                s0, s1 = S[nu, :run], S[4 + nu, :run]
                for i in range(run):
                    s0[i] = m0[i] + m1[i] + m2[i]
                    s1[i] = m1[i] - m2[i] - m3[i]
            for i in range(2):                              # Y[i, j] = Σ_ν s[i, ν] Aᵀ[j, ν]
                h = 2 * t_y + i
                if h == H:
                    break
                a, b = S[4 * i, :run].reshape(t_w, C_out), S[4 * i + 1, :run].reshape(t_w, C_out)
                c, d = S[4 * i + 2, :run].reshape(t_w, C_out), S[4 * i + 3, :run].reshape(t_w, C_out)
                y_row = y[n, h]                             # (W, C_out)
                for t_x in range(t_w):
                    for o in range(C_out):
                        y_row[2 * t_x, o] = a[t_x, o] + b[t_x, o] + c[t_x, o]
                for t_x in range(W // 2):                   # the odd columns that exist
                    for o in range(C_out):
                        y_row[2 * t_x + 1, o] = b[t_x, o] - c[t_x, o] - d[t_x, o]


def _transform_input_adjoint(dV, images, t_h, E, dx_split):
    """dx_pad[n, 2t_y + a, 2t_x + b] += (B dV Bᵀ)[a, b] for every tile: the adjoint of the tiles
    and of V = Bᵀ d B (tiles overlap by 2, so their gradients add).

    dV: (16, tiles·C + padding) like V; dx_split: x_split's layout, zeros to add into;
    E: (16, t_w·C) scratch. A tile row at a time, in two steps as the equation reads:
        E = dV B     E[ξ, b] = Σ_ν dV[ξ, ν] Bᵀ[ν, b]
        dd = B E     dd[a, b] = Σ_ξ Bᵀ[ξ, a] E[ξ, b], added into the run of d[a, b]
    with Bᵀ's columns (1, 0, 0, 0), (0, 1, -1, 1), (-1, 1, 1, 0), (0, 0, 0, -1).
    """
    C, H_pad, half = dx_split.shape[4], dx_split.shape[1], dx_split.shape[3]
    run = (half - 1) * C
    dx_flat = dx_split.reshape(-1)
    for n in range(images):
        for t_y in range(t_h):
            start = (n * t_h + t_y) * run
            for xi in range(4):                             # E[ξ, b], b = 0..3
                v0, v1 = dV[4 * xi, start:start + run], dV[4 * xi + 1, start:start + run]
                v2, v3 = dV[4 * xi + 2, start:start + run], dV[4 * xi + 3, start:start + run]
                e0, e1 = E[4 * xi, :run], E[4 * xi + 1, :run]
                e2, e3 = E[4 * xi + 2, :run], E[4 * xi + 3, :run]
                for i in range(run):
                    e0[i] = v0[i]
                for i in range(run):
                    e1[i] = v1[i] - v2[i] + v3[i]
                for i in range(run):
                    e2[i] = v1[i] + v2[i] - v0[i]
                for i in range(run):
                    e3[i] = -v3[i]
            for b in range(4):                              # dd[a, b], a = 0..3, added
                e0, e1 = E[b, :run], E[4 + b, :run]
                e2, e3 = E[8 + b, :run], E[12 + b, :run]
                d0 = _term(dx_flat, n, 2 * t_y, b, H_pad, half, C, run)
                d1 = _term(dx_flat, n, 2 * t_y + 1, b, H_pad, half, C, run)
                d2 = _term(dx_flat, n, 2 * t_y + 2, b, H_pad, half, C, run)
                d3 = _term(dx_flat, n, 2 * t_y + 3, b, H_pad, half, C, run)
                for i in range(run):
                    d0[i] += e0[i]
                for i in range(run):
                    d1[i] += e1[i] - e2[i] + e3[i]
                for i in range(run):
                    d2[i] += e1[i] + e2[i] - e0[i]
                for i in range(run):
                    d3[i] -= e3[i]


def _join_columns(x_split, n0, n1, offset, x):
    """The inverse of _split_columns: x[n, h, w] = x_pad[n - n0, h + offset, w + offset]."""
    N, H, W, C = x.shape
    for n in range(n1 - n0):
        for h in range(H):
            for w in range(W):
                src = x_split[n, h + offset, (w + offset) % 2, (w + offset) // 2]
                dst = x[n0 + n, h, w]
                for c in range(C):
                    dst[c] = src[c]


_transform_input_adjoint = numba.njit(nogil=True, cache=True)(_transform_input_adjoint)
_join_columns = numba.njit(nogil=True, cache=True)(_join_columns)
_transform_weight = numba.njit(nogil=True, cache=True)(_transform_weight)
_split_columns = numba.njit(nogil=True, cache=True)(_split_columns)
_term = numba.njit(cache=True, inline="always")(_term)
_transform_input = numba.njit(nogil=True, cache=True)(_transform_input)
_transform_output = numba.njit(nogil=True, cache=True)(_transform_output)


# ----- the convolution ----------------------------------------------------------------------
def _planes(worker: int, name: str, rows: int, cols: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """16 (rows, cols) matrices in one scratch buffer, each plane PLANE_PAD values after the last:
    (the buffer, (16, rows·cols + PLANE_PAD), for the kernels; the (16, rows, cols) view, for the GEMMs)."""
    buffer = scratch(worker, name, (16, rows * cols + PLANE_PAD), dtype)
    return buffer, buffer[:, :rows * cols].reshape(16, rows, cols)


def transformed_weight(weight: np.ndarray) -> np.ndarray:
    """weight: (C_out, C_in, 3, 3) -> U: (16, C_out, C_in), U[p] = (G g Gᵀ)[p] for every kernel g."""
    C_out, C_in = weight.shape[:2]
    buffer = np.empty((16, C_out * C_in + PLANE_PAD), weight.dtype)
    U = buffer[:, :C_out * C_in].reshape(16, C_out, C_in)
    w = np.ascontiguousarray(weight)
    parallel(lambda worker, lo, hi: _transform_weight(w, lo, hi, U), C_out, grain=16)
    return U


def conv3x3_forward(x_nhwc: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                    epilogue=None) -> np.ndarray:
    """x_nhwc: (N, H, W, C_in) C-contiguous -> y: (N, H, W, C_out) C-contiguous; stride 1, padding 1.

    weight: (C_out, C_in, 3, 3), bias: (C_out,) or None. epilogue(y[rows], first row, end row),
    if given, is called on each group's rows of y (N·H·W rows of C_out) once they are written.
    """
    N, H, W, C_in = x_nhwc.shape
    C_out, dtype = weight.shape[0], x_nhwc.dtype
    t_h, t_w = tiles(H, W)
    U_t = transformed_weight(weight).transpose(0, 2, 1)     # (16, C_in, C_out): V[p] · U[p]ᵀ
    signs = TERM_SIGNS.astype(dtype)
    y_nhwc = np.empty((N, H, W, C_out), dtype)
    y_rows = y_nhwc.reshape(-1, C_out)
    per_image = 16 * t_h * t_w * (C_in + C_out) * dtype.itemsize
    group = max(1, CHUNK_BYTES // per_image, -(-MIN_TILES // (t_h * t_w)))

    def work(worker, n_lo, n_hi):
        images = min(group, n_hi - n_lo)
        x_split = scratch(worker, "winograd x_split", (images, 2 * t_h + 2, 2, t_w + 1, C_in), dtype)
        S = scratch(worker, "winograd S", (8, t_w * C_out), dtype)
        V_buffer, V = _planes(worker, "winograd V", images * t_h * t_w, C_in, dtype)
        M_buffer, M = _planes(worker, "winograd M", images * t_h * t_w, C_out, dtype)
        for n0 in range(n_lo, n_hi, images):
            n1 = min(n0 + images, n_hi)
            T = (n1 - n0) * t_h * t_w
            _split_columns(x_nhwc, n0, n1, 1, x_split)
            _transform_input(x_split, n1 - n0, TERM_ROWS, TERM_COLS, signs, V_buffer)
            np.matmul(V[:, :T], U_t, out=M[:, :T])           # M[p] = V[p] · U[p]ᵀ
            _transform_output(M_buffer, n0, n1, S, y_nhwc)
            a, b = n0 * H * W, n1 * H * W
            if bias is not None:
                y_rows[a:b] += bias
            if epilogue is not None:
                epilogue(y_rows[a:b], a, b)

    parallel(work, N)
    return y_nhwc


def conv3x3_backward(x_nhwc: np.ndarray, dy_nhwc: np.ndarray, weight: np.ndarray,
                     need_bias: bool, need_input_grad: bool = True):
    """Gradients of conv3x3_forward by the same algorithm: (dx channels-last or None, dW, db or None).

    x_nhwc: (N, H, W, C_in), dy_nhwc: (N, H, W, C_out), both C-contiguous. Y = Aᵀ M A and
    M[p] = V[p] · U[p]ᵀ are linear, so, tile by tile and plane by plane:
        dM    = A dY Aᵀ                   dY's 2×2 tile -> 4×4 (the same kernel as V's, other terms)
        dU[p] = Σ_tiles dM[p]ᵀ · V[p]     (C_out, C_in): 16 GEMMs, V recomputed from x
        dV[p] = dM[p] · U[p]              (tiles, C_in): 16 GEMMs
        dx    = Σ_tiles B dV Bᵀ           each tile's 4×4 gradient added where it came from
        dW    = Gᵀ dU G                   per (o, c)
    2.25x fewer multiplications than im2col's two products, as in the forward.
    """
    N, H, W, C_in = x_nhwc.shape
    C_out, dtype = weight.shape[0], x_nhwc.dtype
    t_h, t_w = tiles(H, W)
    U = transformed_weight(weight) if need_input_grad else None   # (16, C_out, C_in)
    signs, dy_signs = TERM_SIGNS.astype(dtype), DY_SIGNS.astype(dtype)
    dx_nhwc = np.empty_like(x_nhwc) if need_input_grad else None
    dy_rows = dy_nhwc.reshape(-1, C_out)
    per_image = 16 * t_h * t_w * (2 * C_in + C_out) * dtype.itemsize
    group = max(1, CHUNK_BYTES // per_image, -(-MIN_TILES // (t_h * t_w)))

    def work(worker, n_lo, n_hi):
        images = min(group, n_hi - n_lo)
        split_shape = (images, 2 * t_h + 2, 2, t_w + 1)
        x_split = scratch(worker, "winograd x_split", (*split_shape, C_in), dtype)
        dy_split = scratch(worker, "winograd dy_split", (*split_shape, C_out), dtype)
        V_buffer, V = _planes(worker, "winograd V", images * t_h * t_w, C_in, dtype)
        dM_buffer, dM = _planes(worker, "winograd M", images * t_h * t_w, C_out, dtype)
        dU = np.empty((16, C_out, C_in), dtype)             # this worker's sum over its tiles
        if need_input_grad:
            dV_buffer, dV = _planes(worker, "winograd dV", images * t_h * t_w, C_in, dtype)
            dx_split = scratch(worker, "winograd dx_split", (*split_shape, C_in), dtype)
            E = scratch(worker, "winograd E", (16, t_w * C_in), dtype)
        for n0 in range(n_lo, n_hi, images):
            n1 = min(n0 + images, n_hi)
            T = (n1 - n0) * t_h * t_w
            _split_columns(x_nhwc, n0, n1, 1, x_split)
            _transform_input(x_split, n1 - n0, TERM_ROWS, TERM_COLS, signs, V_buffer)
            _split_columns(dy_nhwc, n0, n1, 0, dy_split)
            _transform_input(dy_split, n1 - n0, DY_ROWS, DY_COLS, dy_signs, dM_buffer)
            # dU[p] += dM[p]ᵀ · V[p]
            add_product(worker, dU, n0 == n_lo, dM[:, :T].transpose(0, 2, 1), V[:, :T])
            if need_input_grad:
                np.matmul(dM[:, :T], U, out=dV[:, :T])     # dV[p] = dM[p] · U[p]
                dx_split[:n1 - n0] = 0
                _transform_input_adjoint(dV_buffer, n1 - n0, t_h, E, dx_split)
                _join_columns(dx_split, n0, n1, 1, dx_nhwc)
        rows = dy_rows[n_lo * H * W:n_hi * H * W]
        return dU, rows.sum(axis=0, dtype=np.float64) if need_bias else None

    dU, db = sum_over_workers(parallel(work, N), need_bias, dtype)
    # dW[o, c, i, j] = Σ_(ξ, ν) G[ξ, i] G[ν, j] dU[4ξ + ν, o, c]: one product with G ⊗ G
    GG = np.kron(G, G).astype(dtype)                        # (16, 9): [(ξ, ν), (i, j)]
    dW = (GG.T @ dU.reshape(16, -1)).reshape(3, 3, C_out, C_in).transpose(2, 3, 0, 1)
    return dx_nhwc, np.ascontiguousarray(dW), db
