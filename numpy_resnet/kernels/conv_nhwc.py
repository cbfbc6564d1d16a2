"""The fast convolution: channels-last memory, im2col one cache-sized chunk of rows at a time.

Layout. A channels-last array has the shape (N, C, H, W) of any other, but its memory is
ordered (N, H, W, C), as PyTorch's `memory_format=torch.channels_last`: the C values of one
pixel sit side by side. `x.transpose(0, 2, 3, 1)` is then an (N, H, W, C) view of the same
memory, with no copy. The layers of the fast path return channels-last arrays, so the next
layer reads them without a copy; NumPy code that is given them computes the same numbers.

Rows. Output pixel r = (n, h_o, w_o) is row r of an (N·H_out·W_out, C_out) matrix Y, which
is the (N, H_out, W_out, C_out) output itself. Its row of `cols` holds the k·k·C_in inputs
the pixel sees, in the order (i, j, c), so that one matrix product computes every pixel:

    cols[r, (i·k + j)·C_in + c] = x_pad[n, h_o·s + i, w_o·s + j, c]
    Y = cols · W_matᵀ,   W_mat = weight.transpose(0, 2, 3, 1): (C_out, k·k·C_in)

(This is kernels/im2col_numpy.py's unfold with rows and columns swapped and the columns in
(i, j, c) order instead of (c, i, j): tests/test_conv_nhwc.py checks the two against each
other.) Backward, as in nn/conv.py:  dW_mat = dYᵀ · cols,  dcols = dY · W_mat,  dx = col2im(dcols).

Chunks. `cols` is k·k times larger than x, so it is never made whole: each worker
(threads.py) takes whole images and walks through their rows R at a time, R chosen so that a
chunk of cols fits in the cache. im2col writes the chunk, the GEMM reads it back from the
cache, and backward recomputes it rather than keeping it. Whole images per worker mean that
no two workers' col2im ever add into the same pixel of dx.
"""

from __future__ import annotations

import numba
import numpy as np

from . import winograd
from .im2col_numpy import conv_output_size
from .threads import add_product, parallel, scratch, sum_over_workers

# a forward chunk of cols: 1-4 MiB run alike, smaller chunks make short GEMMs (docs/performance.md)
FORWARD_CHUNK_BYTES = 2 << 20
BACKWARD_CHUNK_BYTES = 4 << 20      # backward adds dW once per chunk: fewer, larger chunks
MIN_CHUNK_ROWS = 512                # a GEMM with fewer rows than this runs well below peak
# a stride-1 conv's backward by the flipped-kernel conv (_flipped_backward), up to this many
# output channels, else by col2im: its GEMM has K = k·k·C_out, so it wins while C_out is small
# (where the two cross: docs/performance.md)
FLIPPED_MAX_CHANNELS = 128
# im2col copies a kernel row's k taps as one run of k·C values, away from the left and right
# edges, up to this many input channels, else tap by tap: the run pays for few channels only
# (docs/performance.md)
SPAN_MAX_CHANNELS = 16


# ----- layout ------------------------------------------------------------------------------
def is_channels_last(x: np.ndarray) -> bool:
    """True if x (N, C, H, W) is an (N, H, W, C) C-contiguous array seen through a transpose."""
    return x.ndim == 4 and x.transpose(0, 2, 3, 1).flags.c_contiguous


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """x: (N, C, H, W), any memory order -> the (N, H, W, C) C-contiguous array (a view if it can)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def from_nhwc(x_nhwc: np.ndarray) -> np.ndarray:
    """(N, H, W, C) C-contiguous -> the same memory seen as (N, C, H, W): channels-last."""
    return x_nhwc.transpose(0, 3, 1, 2)


def weight_matrix(weight: np.ndarray) -> np.ndarray:
    """weight: (C_out, C_in, k, k) -> W_mat: (C_out, k·k·C_in), columns in cols' (i, j, c) order."""
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(weight.shape[0], -1)


def weight_from_matrix(w_mat: np.ndarray, weight_shape: tuple) -> np.ndarray:
    """The inverse of weight_matrix: (C_out, k·k·C_in) -> (C_out, C_in, k, k)."""
    C_out, C_in, kh, kw = weight_shape
    return w_mat.reshape(C_out, kh, kw, C_in).transpose(0, 3, 1, 2)


def chunk_rows(K: int, itemsize: int, chunk_bytes: int, total_rows: int) -> int:
    return max(1, min(total_rows, max(MIN_CHUNK_ROWS, chunk_bytes // (K * itemsize))))


# ----- the kernels: plain Python loops, compiled by Numba -----------------------------------
def _first_pixel(r, H_out, W_out):
    """Output row r as the pixel (n, h_o, w_o) it stands for: r = (n·H_out + h_o)·W_out + w_o."""
    return r // (H_out * W_out), (r // W_out) % H_out, r % W_out


def _next_pixel(n, h_o, w_o, H_out, W_out):
    """The pixel of row r + 1, counted on like an odometer (no division in the loop)."""
    w_o += 1
    if w_o == W_out:
        w_o = 0
        h_o += 1
        if h_o == H_out:
            h_o = 0
            n += 1
    return n, h_o, w_o


def _im2col_rows(x, k, stride, padding, r0, r1, cols):
    """cols[r - r0, (i·k + j)·C + c] = x_pad[n, h_o·s + i, w_o·s + j, c] for rows r0 <= r < r1.

    x: (N, H, W, C), cols: (r1 - r0, k·k·C); row r is output pixel (n, h_o, w_o). With few
    channels (C <= SPAN_MAX_CHANNELS) and away from the left and right edges, the k taps of
    kernel row i are the k·C consecutive values x[n, h, w_0 : w_0 + k, :]: one loop, not k.
    """
    N, H, W, C = x.shape
    H_out = (H + 2 * padding - k) // stride + 1
    W_out = (W + 2 * padding - k) // stride + 1
    x_lines = x.reshape(N, H, W * C)
    span = k * C
    n, h_o, w_o = _first_pixel(r0, H_out, W_out)
    for r in range(r1 - r0):
        row = cols[r]
        w_0 = w_o * stride - padding
        in_one_run = C <= SPAN_MAX_CHANNELS and w_0 >= 0 and w_0 + k <= W
        for i in range(k):
            h = h_o * stride - padding + i
            if in_one_run and 0 <= h < H:               # kernel row i: k·C values at once
                start, line = i * span, x_lines[n, h, w_0 * C:w_0 * C + span]
                for t in range(span):
                    row[start + t] = line[t]
                continue
            for j in range(k):
                w = w_0 + j
                start = (i * k + j) * C                 # tap (i, j) in the row
                if h < 0 or h >= H or w < 0 or w >= W:  # the tap is on the padding
                    for c in range(C):
                        row[start + c] = 0
                else:
                    pixel = x[n, h, w]                  # its C channels, side by side
                    for c in range(C):
                        row[start + c] = pixel[c]
        n, h_o, w_o = _next_pixel(n, h_o, w_o, H_out, W_out)


def _col2im_rows(dcols, k, stride, padding, r0, r1, dx):
    """dx[n, h, w, c] += every dcols entry that _im2col_rows copied from x[n, h, w, c].

    The adjoint of _im2col_rows; dx: (N, H, W, C) C-contiguous holds what to add to (zeros,
    usually). Away from the left and right edges, the k taps of kernel row i add into k·C
    consecutive values of dx, dx[n, h, w_0 : w_0 + k, :]: one loop, not k (faster at every
    channel count; in _im2col_rows the same shortcut pays only for few channels).
    """
    N, H, W, C = dx.shape
    H_out = (H + 2 * padding - k) // stride + 1
    W_out = (W + 2 * padding - k) // stride + 1
    dx_lines = dx.reshape(N, H, W * C)
    span = k * C
    n, h_o, w_o = _first_pixel(r0, H_out, W_out)
    for r in range(r1 - r0):
        row = dcols[r]
        w_0 = w_o * stride - padding
        inside = w_0 >= 0 and w_0 + k <= W
        for i in range(k):
            h = h_o * stride - padding + i
            if h < 0 or h >= H:
                continue
            if inside:                                  # kernel row i: k·C values at once
                start, line = i * span, dx_lines[n, h, w_0 * C:w_0 * C + span]
                for t in range(span):
                    line[t] += row[start + t]
                continue
            for j in range(k):
                w = w_0 + j
                if 0 <= w < W:
                    start, pixel = (i * k + j) * C, dx[n, h, w]
                    for c in range(C):
                        pixel[c] += row[start + c]
        n, h_o, w_o = _next_pixel(n, h_o, w_o, H_out, W_out)


# the kernels call the two helpers by name: from here on those names are compiled versions
_first_pixel = numba.njit(cache=True, inline="always")(_first_pixel)
_next_pixel = numba.njit(cache=True, inline="always")(_next_pixel)
_im2col_rows = numba.njit(nogil=True, cache=True)(_im2col_rows)
_col2im_rows = numba.njit(nogil=True, cache=True)(_col2im_rows)


# ----- forward and backward ---------------------------------------------------------------
def _geometry(x_nhwc: np.ndarray, weight: np.ndarray, stride: int, padding: int):
    N, H, W, C_in = x_nhwc.shape
    k = weight.shape[2]
    H_out, W_out = conv_output_size(H, k, stride, padding), conv_output_size(W, k, stride, padding)
    direct = k == 1 and stride == 1 and padding == 0        # cols is x itself: no im2col
    return N, H_out, W_out, k, k * k * C_in, direct


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: int, padding: int, epilogue=None) -> np.ndarray:
    """x: (N, C_in, H, W), any layout -> y: (N, C_out, H_out, W_out), channels-last.

    weight: (C_out, C_in, k, k), bias: (C_out,) or None.  Y[rows] = cols[rows] · W_matᵀ + b.
    epilogue(Y[rows], first row, end row), if given, is called on each chunk of Y as soon as
    it is computed, while it is still in the cache (the engine's fused BatchNorm and ReLU).
    3x3 stride-1 convs with enough channels take Winograd's route instead (winograd.py).
    """
    x_nhwc = to_nhwc(x)
    if winograd.applies(weight, stride, padding):
        return from_nhwc(winograd.conv3x3_forward(x_nhwc, weight, bias, epilogue))
    N, H_out, W_out, k, K, direct = _geometry(x_nhwc, weight, stride, padding)
    w_mat_t = weight_matrix(weight).T                       # (K, C_out), a view
    y_nhwc = np.empty((N, H_out, W_out, weight.shape[0]), x.dtype)
    y_rows = y_nhwc.reshape(-1, weight.shape[0])
    rows_per_image = H_out * W_out

    def work(worker, n_lo, n_hi):
        lo, hi = n_lo * rows_per_image, n_hi * rows_per_image
        R = chunk_rows(K, x.itemsize, FORWARD_CHUNK_BYTES, hi - lo)
        for a, b, cols in _chunks_of_cols(worker, x_nhwc, k, stride, padding, lo, hi, R, direct):
            np.matmul(cols, w_mat_t, out=y_rows[a:b])     # Y = cols · W_matᵀ
            if bias is not None:
                y_rows[a:b] += bias                         # + b
            if epilogue is not None:
                epilogue(y_rows[a:b], a, b)

    parallel(work, N)
    return from_nhwc(y_nhwc)


def flipped_weight(weight: np.ndarray) -> np.ndarray:
    """weight: (C_out, C_in, k, k) -> W': (C_in, C_out, k, k),  W'[c, o, i, j] = W[o, c, k-1-i, k-1-j]."""
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def conv2d_backward(x: np.ndarray, weight: np.ndarray, grad_output: np.ndarray, stride: int,
                    padding: int, need_bias: bool, need_input_grad: bool = True):
    """Gradients of conv2d_forward: (dx channels-last or None, dW like weight, db or None).

    x: the forward's input (N, C_in, H, W); grad_output dY: (N, C_out, H_out, W_out), any layout.
        dW_mat = Σ_chunks dY[rows]ᵀ · cols[rows]      db = Σ_rows dY
        dx     = col2im(dY · W_mat)
    With stride 1, dx is itself a convolution, of dY with the kernel turned by 180 degrees and
    its in/out channels swapped, padded by k - 1 - p: every x pixel gathers what it gave to the
    k·k outputs it touched. That is another forward pass (an im2col and one GEMM per chunk),
    and the same im2col of dY gives dW too (_flipped_backward). It is the faster of the two
    when C_out is small (its GEMM has K = k·k·C_out instead of C_out) and for 1x1 convs (no
    im2col at all); above FLIPPED_MAX_CHANNELS, col2im is. The convs whose forward is
    Winograd's (winograd.applies) take its backward, faster than either.
    """
    x_nhwc, dy_nhwc = to_nhwc(x), to_nhwc(grad_output)
    if winograd.applies(weight, stride, padding):          # the forward's route, backwards
        dx_nhwc, dW, db = winograd.conv3x3_backward(x_nhwc, dy_nhwc, weight, need_bias,
                                                    need_input_grad)
        return (None if dx_nhwc is None else from_nhwc(dx_nhwc)), dW, db
    k = weight.shape[2]
    flipped = (stride == 1 and padding <= k - 1
               and (k == 1 or weight.shape[0] <= FLIPPED_MAX_CHANNELS))
    if need_input_grad and flipped:
        dx_nhwc, dW, db = _flipped_backward(x_nhwc, dy_nhwc, weight, padding, need_bias)
        return from_nhwc(dx_nhwc), dW, db
    dW, db = _weight_grad(x_nhwc, dy_nhwc, weight, stride, padding, need_bias)
    if not need_input_grad:
        return None, dW, db
    return from_nhwc(_input_grad_col2im(x_nhwc, dy_nhwc, weight, stride, padding)), dW, db


def _flipped_backward(x_nhwc, dy_nhwc, weight, padding, need_bias):
    """Stride 1: dx as the flipped-kernel conv, and dW from the same im2col of dY.

    cols' = im2col(dY) with padding p' = k - 1 - p has one row per pixel q of x, holding the
    k·k·C_out values of dY that x[q] fed, in (i', j', o) order; tap (i', j') is the forward's
    tap (k-1-i', k-1-j'). So, chunk by chunk of x's rows, one cols' serves both products:
        dx[rows] = cols'[rows] · W'_matᵀ            (W' = flipped_weight(W))
        dW'     += cols'[rows]ᵀ · x[rows]           dW'[(i', j', o), c] = dW[o, c, k-1-i', k-1-j']
    instead of a second im2col, of x, for dW.
    """
    N, H, W, C_in = x_nhwc.shape
    C_out, k, dtype = weight.shape[0], weight.shape[2], x_nhwc.dtype
    K, p_flip = k * k * C_out, k - 1 - padding
    w_flip_t = weight_matrix(flipped_weight(weight)).T      # (k·k·C_out, C_in)
    dx_nhwc = np.empty_like(x_nhwc)
    x_rows, dx_rows = x_nhwc.reshape(-1, C_in), dx_nhwc.reshape(-1, C_in)
    dy_rows = dy_nhwc.reshape(-1, C_out)
    direct = k == 1 and p_flip == 0                         # cols' is dY itself
    dy_per_image = dy_nhwc.shape[1] * dy_nhwc.shape[2]

    def work(worker, n_lo, n_hi):
        lo, hi = n_lo * H * W, n_hi * H * W                 # rows of x and dx
        dW_flip = np.empty((K, C_in), dtype)                # this worker's sum over its chunks
        R = chunk_rows(K, dtype.itemsize, FORWARD_CHUNK_BYTES, hi - lo)
        for a, b, cols in _chunks_of_cols(worker, dy_nhwc, k, 1, p_flip, lo, hi, R, direct):
            np.matmul(cols, w_flip_t, out=dx_rows[a:b])    # dx = cols' · W'_matᵀ
            add_product(worker, dW_flip, a == lo, cols.T, x_rows[a:b])   # dW' += cols'ᵀ · x
        dy_mine = dy_rows[n_lo * dy_per_image:n_hi * dy_per_image]
        return dW_flip, dy_mine.sum(axis=0, dtype=np.float64) if need_bias else None

    dW_flip, db = sum_over_workers(parallel(work, N), need_bias, dtype)
    # dW'[(i', j', o), c] -> dW[o, c, i, j] with i = k-1-i', j = k-1-j'
    dW = dW_flip.reshape(k, k, C_out, C_in)[::-1, ::-1].transpose(2, 3, 0, 1)
    return dx_nhwc, np.ascontiguousarray(dW), db


def _weight_grad(x_nhwc, dy_nhwc, weight, stride, padding, need_bias):
    """dW = Σ_chunks dY[rows]ᵀ · cols[rows] (like weight), db = Σ_rows dY (or None)."""
    N, H_out, W_out, k, K, direct = _geometry(x_nhwc, weight, stride, padding)
    C_out, dtype = weight.shape[0], x_nhwc.dtype
    dy_rows = dy_nhwc.reshape(-1, C_out)
    rows_per_image = H_out * W_out

    def work(worker, n_lo, n_hi):
        lo, hi = n_lo * rows_per_image, n_hi * rows_per_image
        dW = np.empty((C_out, K), dtype)                    # this worker's sum over its chunks
        R = chunk_rows(K, dtype.itemsize, BACKWARD_CHUNK_BYTES, hi - lo)
        for a, b, cols in _chunks_of_cols(worker, x_nhwc, k, stride, padding, lo, hi, R, direct):
            add_product(worker, dW, a == lo, dy_rows[a:b].T, cols)    # dW_mat += dY[rows]ᵀ · cols
        return dW, dy_rows[lo:hi].sum(axis=0, dtype=np.float64) if need_bias else None

    dW, db = sum_over_workers(parallel(work, N), need_bias, dtype)
    return weight_from_matrix(dW, weight.shape), db


def _chunks_of_cols(worker: int, x_nhwc: np.ndarray, k: int, stride: int, padding: int,
                    lo: int, hi: int, R: int, direct: bool):
    """(a, b, cols[a:b]) for each chunk of R rows in lo <= r < hi: the rows of x itself for a
    1x1 stride-1 conv, else that chunk of im2col(x), made in this worker's scratch buffer
    (recomputed each time, never kept)."""
    x_rows = x_nhwc.reshape(-1, x_nhwc.shape[3])
    for a in range(lo, hi, R):
        b = min(a + R, hi)
        if direct:
            yield a, b, x_rows[a:b]
        else:
            cols = scratch(worker, "cols", (b - a, k * k * x_nhwc.shape[3]), x_nhwc.dtype)
            _im2col_rows(x_nhwc, k, stride, padding, a, b, cols)
            yield a, b, cols


def _input_grad_col2im(x_nhwc, dy_nhwc, weight, stride, padding):
    """dx = col2im(dY · W_mat), chunk by chunk: (N, H, W, C_in)."""
    N, H_out, W_out, k, K, direct = _geometry(x_nhwc, weight, stride, padding)
    w_mat, dtype = weight_matrix(weight), x_nhwc.dtype
    dy_rows = dy_nhwc.reshape(-1, weight.shape[0])
    dx_nhwc = np.empty_like(x_nhwc)
    rows_per_image = H_out * W_out

    def work(worker, n_lo, n_hi):
        lo, hi = n_lo * rows_per_image, n_hi * rows_per_image
        dx_nhwc[n_lo:n_hi] = 0                              # col2im adds into it
        R = chunk_rows(K, dtype.itemsize, FORWARD_CHUNK_BYTES, hi - lo)
        for a in range(lo, hi, R):
            b = min(a + R, hi)
            dcols = np.matmul(dy_rows[a:b], w_mat, out=scratch(worker, "dcols", (b - a, K), dtype))
            _col2im_rows(dcols, k, stride, padding, a, b, dx_nhwc)   # whole images: no overlap

    parallel(work, N)
    return dx_nhwc
