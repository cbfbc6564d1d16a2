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

    pad      copy the group's images into a zero-bordered buffer (no edge tests below)
    V        one pass over the tiles (_transform_input)
    M        16 GEMMs
    Y        one pass over M (_transform_output), then the caller's epilogue on those rows

Rounding. The transforms add and subtract up to 9 values, so the result differs from
im2col's in the last bits: in float32 about 1e-6 of the largest output, in float64 about
1e-15 (tests/test_winograd.py). Backward does not depend on how the forward was computed
(conv_nhwc.conv2d_backward computes the gradients of the convolution itself).
"""

from __future__ import annotations

import numba
import numpy as np

from .threads import parallel, scratch

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

# Which convs take this route (conv_nhwc.conv2d_forward asks `applies`). Measured on
# ResNet-18's 3x3 stride-1 convs, 2 workers, forward: the same speed as im2col at 16 input
# channels and faster from 32 up (see the table in README.md's speed section).
ENABLED = True
MIN_CHANNELS = 32
# A group of images per GEMM: V and M of about this many bytes, and at least MIN_TILES tiles
# (a GEMM with fewer rows runs well below peak). Each of the 16 planes of V and M is padded
# by PLANE_PAD values: planes exactly a multiple of 4 KiB apart made the transforms 8x slower
# (the CPU confuses stores to one plane with loads from another: "4K aliasing").
CHUNK_BYTES = 1 << 20
MIN_TILES = 256
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


def _pad_images(x, n0, n1, x_pad):
    """x_pad[n - n0] = images n0 <= n < n1 of x (N, H, W, C) inside a border of zeros.

    x_pad: (n1 - n0, 2·t_h + 2, 2·t_w + 2, C): one zero row/column before, and one or two after
    (two if H/W is odd, so that the last tile is whole).
    """
    N, H, W, C = x.shape
    for n in range(n1 - n0):
        for h in range(x_pad.shape[1]):
            for w in range(x_pad.shape[2]):
                dst = x_pad[n, h, w]
                if 1 <= h <= H and 1 <= w <= W:
                    src = x[n0 + n, h - 1, w - 1]
                    for c in range(C):
                        dst[c] = src[c]
                else:
                    for c in range(C):
                        dst[c] = 0


def _transform_input(x_pad, images, V):
    """V[4ξ + ν, t·C + c] = (Bᵀ d B)[ξ, ν] for each tile t = (n, t_y, t_x) of x_pad[:images].

    d = x_pad[n, 2t_y : 2t_y + 4, 2t_x : 2t_x + 4, c]. V: (16, tiles·C + padding), C-contiguous
    (a unit stride along c, which the compiler needs to vectorise the loop over c).
    """
    C = x_pad.shape[3]
    t_h, t_w = (x_pad.shape[1] - 2) // 2, (x_pad.shape[2] - 2) // 2
    t = 0
    for n in range(images):
        for t_y in range(t_h):
            r0, r1 = x_pad[n, 2 * t_y], x_pad[n, 2 * t_y + 1]           # the tile's 4 rows
            r2, r3 = x_pad[n, 2 * t_y + 2], x_pad[n, 2 * t_y + 3]
            for t_x in range(t_w):
                w, q = 2 * t_x, t * C
                for c in range(C):
                    # e = Bᵀ d, column by column: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    e00, e01 = r0[w, c] - r2[w, c], r0[w + 1, c] - r2[w + 1, c]
                    e02, e03 = r0[w + 2, c] - r2[w + 2, c], r0[w + 3, c] - r2[w + 3, c]
                    e10, e11 = r1[w, c] + r2[w, c], r1[w + 1, c] + r2[w + 1, c]
                    e12, e13 = r1[w + 2, c] + r2[w + 2, c], r1[w + 3, c] + r2[w + 3, c]
                    e20, e21 = r2[w, c] - r1[w, c], r2[w + 1, c] - r1[w + 1, c]
                    e22, e23 = r2[w + 2, c] - r1[w + 2, c], r2[w + 3, c] - r1[w + 3, c]
                    e30, e31 = r1[w, c] - r3[w, c], r1[w + 1, c] - r3[w + 1, c]
                    e32, e33 = r1[w + 2, c] - r3[w + 2, c], r1[w + 3, c] - r3[w + 3, c]
                    # V = e B: the same combination along each row
                    V[0, q + c], V[1, q + c] = e00 - e02, e01 + e02
                    V[2, q + c], V[3, q + c] = e02 - e01, e01 - e03
                    V[4, q + c], V[5, q + c] = e10 - e12, e11 + e12
                    V[6, q + c], V[7, q + c] = e12 - e11, e11 - e13
                    V[8, q + c], V[9, q + c] = e20 - e22, e21 + e22
                    V[10, q + c], V[11, q + c] = e22 - e21, e21 - e23
                    V[12, q + c], V[13, q + c] = e30 - e32, e31 + e32
                    V[14, q + c], V[15, q + c] = e32 - e31, e31 - e33
                t += 1


def _transform_output(M, n0, n1, y):
    """y[n, 2t_y + i, 2t_x + j, o] = (Aᵀ m A)[i, j] for the tiles of images n0 <= n < n1.

    m = M[:, t·C_out + o] as 4×4, t counting the tiles from image n0; M: (16, tiles·C_out +
    padding), C-contiguous. y: (N, H, W, C_out); the outputs of a cut-off last tile row or
    column (odd H/W) are not written.
    """
    N, H, W, C_out = y.shape
    t_h, t_w = (H + 1) // 2, (W + 1) // 2
    t = 0
    for n in range(n0, n1):
        for t_y in range(t_h):
            h = 2 * t_y
            for t_x in range(t_w):
                w, q = 2 * t_x, t * C_out
                whole = h + 1 < H and w + 1 < W
                y00, y01 = y[n, h, w], y[n, h, min(w + 1, W - 1)]       # C_out outputs each
                y10, y11 = y[n, min(h + 1, H - 1), w], y[n, min(h + 1, H - 1), min(w + 1, W - 1)]
                for o in range(C_out):
                    m = q + o
                    # s = Aᵀ m: rows m0 + m1 + m2, m1 - m2 - m3
                    s00 = M[0, m] + M[4, m] + M[8, m]
                    s01 = M[1, m] + M[5, m] + M[9, m]
                    s02 = M[2, m] + M[6, m] + M[10, m]
                    s03 = M[3, m] + M[7, m] + M[11, m]
                    s10 = M[4, m] - M[8, m] - M[12, m]
                    s11 = M[5, m] - M[9, m] - M[13, m]
                    s12 = M[6, m] - M[10, m] - M[14, m]
                    s13 = M[7, m] - M[11, m] - M[15, m]
                    # Y = s A: the same along each row
                    if whole:
                        y00[o], y01[o] = s00 + s01 + s02, s01 - s02 - s03
                        y10[o], y11[o] = s10 + s11 + s12, s11 - s12 - s13
                    else:                       # the last tile row/column of an odd H or W:
                        y11[o] = s11 - s12 - s13    # the values it cannot hold are written
                        y10[o] = s10 + s11 + s12    # first, then overwritten by those it can
                        y01[o] = s01 - s02 - s03
                        y00[o] = s00 + s01 + s02
                t += 1


_transform_weight = numba.njit(nogil=True, cache=True)(_transform_weight)
_pad_images = numba.njit(nogil=True, cache=True)(_pad_images)
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
    y_nhwc = np.empty((N, H, W, C_out), dtype)
    y_rows = y_nhwc.reshape(-1, C_out)
    per_image = 16 * t_h * t_w * (C_in + C_out) * dtype.itemsize
    group = max(1, CHUNK_BYTES // per_image, -(-MIN_TILES // (t_h * t_w)))

    def work(worker, n_lo, n_hi):
        images = min(group, n_hi - n_lo)
        x_pad = scratch(worker, "winograd x_pad", (images, 2 * t_h + 2, 2 * t_w + 2, C_in), dtype)
        V_buffer, V = _planes(worker, "winograd V", images * t_h * t_w, C_in, dtype)
        M_buffer, M = _planes(worker, "winograd M", images * t_h * t_w, C_out, dtype)
        for n0 in range(n_lo, n_hi, images):
            n1 = min(n0 + images, n_hi)
            T = (n1 - n0) * t_h * t_w
            _pad_images(x_nhwc, n0, n1, x_pad)
            _transform_input(x_pad, n1 - n0, V_buffer)
            np.matmul(V[:, :T], U_t, out=M[:, :T])           # M[p] = V[p] · U[p]ᵀ
            _transform_output(M_buffer, n0, n1, y_nhwc)
            a, b = n0 * H * W, n1 * H * W
            if bias is not None:
                y_rows[a:b] += bias
            if epilogue is not None:
                epilogue(y_rows[a:b], a, b)

    parallel(work, N)
    return y_nhwc
