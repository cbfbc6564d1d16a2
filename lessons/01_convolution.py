# %% [markdown]
# # Lesson 01 — Convolution, three ways
#
# **Goal:** compute a 2-D convolution from its definition with loops, then as one matrix
# product (im2col + GEMM), then with compiled Numba kernels; see that all three agree and
# why fast implementations turn convolution into a matrix product.
#
# Run it with `python lessons/01_convolution.py` (add `NUMPY_RESNET_QUICK=1` for tiny sizes),
# or open it as a notebook.
#
# ## The math
#
# A convolution layer (strictly, a cross-correlation, as in every deep-learning library) takes
# an input $x$ of shape $(N, C_{in}, H, W)$, weights $W$ of shape $(C_{out}, C_{in}, k, k)$
# and a bias $b$ of shape $(C_{out},)$. With stride $s$ and zero padding $p$:
#
# $$y[n, o, h_o, w_o] = b[o] + \sum_{c=0}^{C_{in}-1}\sum_{i=0}^{k-1}\sum_{j=0}^{k-1}
#   W[o, c, i, j]\; x_{pad}[n, c, h_o s + i, w_o s + j]$$
#
# $$H_{out} = \left\lfloor \frac{H + 2p - k}{s} \right\rfloor + 1 \qquad (\text{same for } W)$$
#
# Every output entry is a dot product between the weights of one output channel and one
# $C_{in} \times k \times k$ window of the input. **im2col** ("image to columns") copies each
# window into a column of a matrix:
#
# $$\text{cols}[(c, i, j),\ (n, h_o, w_o)] = x_{pad}[n, c, h_o s + i, w_o s + j]
#   \qquad \text{cols}: (C_{in} k^2,\ N H_{out} W_{out})$$
#
# and then all the dot products at once are one matrix product (a GEMM):
#
# $$Y = W_{mat} \cdot \text{cols} + b, \qquad W_{mat} = W \text{ reshaped to } (C_{out}, C_{in} k^2).$$

# %%
import numpy as np
from _common import MODE, QUICK, best_time, check, pick, print_table, rng, show_or_save

from numpy_resnet import nn, use_engine
from numpy_resnet.kernels import conv2d_naive, conv_output_size, im2col_numpy

use_engine("reference")  # the checks below run the code in nn/ you are reading, not the fast engine's twins
print(f"mode: {MODE}")

# %% [markdown]
# ## One output entry, by hand
#
# A 4x4 single-channel image holding 0..15 and a 3x3 kernel of ones, no padding: each output
# entry is the sum of a 3x3 window. The top-left one is $0+1+2+4+5+6+8+9+10 = 45$.

# %%
x_small = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)       # (N, C, H, W)
w_ones = np.ones((1, 1, 3, 3))                                      # (C_out, C_in, k, k)
y_small = conv2d_naive(x_small, w_ones)
print("x =\n", x_small[0, 0])
print("y = conv(x, ones) =\n", y_small[0, 0])
check(y_small[0, 0, 0, 0] == 45, "the top-left output is the sum of the top-left 3x3 window, 45")
check(y_small.shape == (1, 1, conv_output_size(4, 3, 1, 0), conv_output_size(4, 3, 1, 0)),
      "H_out = (4 + 0 - 3) // 1 + 1 = 2")

# %% [markdown]
# ## im2col: the windows become columns
#
# The same image unfolded: 9 rows (one per kernel position $(i, j)$) and 4 columns (one per
# output position). Column 0 is the top-left window, read row by row.

# %%
cols_small = im2col_numpy(x_small, 3, 3, 1, 0)        # (C·k·k, N·H_out·W_out) = (9, 4)
print("cols =\n", cols_small)
check(np.array_equal(cols_small[:, 0], x_small[0, 0, :3, :3].ravel()),
      "column 0 of cols is the top-left window")
y_gemm_small = (w_ones.reshape(1, -1) @ cols_small).reshape(1, 1, 2, 2)
check(np.array_equal(y_gemm_small, y_small), "W_mat · cols gives the same 2x2 output")

# %% [markdown]
# ## The three implementations on a real-sized layer
#
# Now a layer like those in a CIFAR ResNet: 3x3 kernels, padding 1, a batch of images.
# We write the GEMM version ourselves (a few lines) and check it against the loops, then
# with the Numba im2col and against the library's `nn.Conv2d`, which does exactly this.

# %%
from numpy_resnet.kernels.im2col_numba import im2col_numba  # noqa: E402

N, C_in, C_out, H = pick((2, 4, 4, 8), (8, 16, 16, 32))
k, stride, padding = 3, 1, 1
g = rng(0)
x = g.standard_normal((N, C_in, H, H)).astype(np.float32)
w = g.standard_normal((C_out, C_in, k, k)).astype(np.float32) * 0.1
b = g.standard_normal(C_out).astype(np.float32)
H_out = conv_output_size(H, k, stride, padding)


def conv_im2col(x, w, b, im2col):
    """Convolution as im2col + GEMM.  x: (N, C_in, H, W) -> (N, C_out, H_out, W_out)."""
    cols = im2col(x, k, k, stride, padding)                     # (C_in·k·k, N·H_out·W_out)
    y = w.reshape(C_out, -1) @ cols + b[:, None]                # (C_out, N·H_out·W_out)
    return y.reshape(C_out, N, H_out, H_out).transpose(1, 0, 2, 3)


y_naive = conv2d_naive(x, w, b, stride, padding)
y_numpy = conv_im2col(x, w, b, im2col_numpy)
y_numba = conv_im2col(x, w, b, im2col_numba)    # the first call compiles (or loads the cache)

conv = nn.Conv2d(C_in, C_out, k, stride=stride, padding=padding)
conv.weight.data[...] = w
conv.bias.data[...] = b
y_layer = conv(x)

print(f"x {x.shape} -> y {y_naive.shape}")
check(np.allclose(y_numpy, y_naive, atol=1e-4), "im2col (NumPy) + GEMM matches the loops")
check(np.allclose(y_numba, y_naive, atol=1e-4), "im2col (Numba) + GEMM matches the loops")
check(np.array_equal(im2col_numba(x, k, k, stride, padding),
                     im2col_numpy(x, k, k, stride, padding)),
      "the Numba and NumPy im2col produce identical columns")
check(np.allclose(y_layer, y_naive, atol=1e-4), "nn.Conv2d matches the loops")
print(f"largest difference loops vs nn.Conv2d: {np.abs(y_layer - y_naive).max():.1e} "
      f"(float32 sums in a different order)")

# %% [markdown]
# ## Why im2col: a timing table
#
# The loops do the same multiply-adds as the GEMM, $N \cdot C_{out} \cdot H_{out} W_{out}
# \cdot C_{in} k^2$ of them, but one Python-level step per output entry. The GEMM hands all
# of them to BLAS, which is written for exactly this. The price is memory: `cols` holds
# every input pixel about $k^2 = 9$ times.
#
# The table's last row is the same `nn.Conv2d` on the fast engine, the library's default,
# switched on for that row alone (`with use_engine("fast")`): it computes the same numbers
# as the layer in `nn/conv.py`, up to rounding (`tests/` checks that they agree), only faster; the library
# version, at the end, says how.

# %%
def conv_fast_engine():
    with use_engine("fast"):
        return conv(x)


check(np.allclose(conv_fast_engine(), y_layer, atol=1e-4),
      "nn.Conv2d on the fast engine gives the reference's numbers")
macs = N * C_out * H_out * H_out * C_in * k * k
repeat = pick(2, 3)
timings = {
    "loops (conv2d_naive)": best_time(lambda: conv2d_naive(x, w, b, stride, padding), repeat=1),
    "im2col NumPy + GEMM": best_time(lambda: conv_im2col(x, w, b, im2col_numpy), repeat),
    "im2col Numba + GEMM": best_time(lambda: conv_im2col(x, w, b, im2col_numba), repeat),
    "nn.Conv2d, reference engine": best_time(lambda: conv(x), repeat),
    "nn.Conv2d, fast engine": best_time(conv_fast_engine, repeat),
}
slowest = timings["loops (conv2d_naive)"]
print_table(["method", "seconds", "speed-up", "GMAC/s"],
            [[name, f"{t:.4f}", f"{slowest / t:.0f}x", f"{macs / t / 1e9:.2f}"]
             for name, t in timings.items()])
cols_bytes = C_in * k * k * N * H_out * H_out * 4
print(f"\n{macs:,} multiply-adds; cols takes {cols_bytes / 1e6:.1f} MB, the input "
      f"{x.nbytes / 1e6:.2f} MB ({cols_bytes / x.nbytes:.0f}x)")
check(timings["im2col NumPy + GEMM"] < slowest, "im2col + GEMM is faster than the loops")

# %%
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(7, 3))
names = list(timings)
colors = ["tab:red", "tab:blue", "tab:green", "tab:gray", "tab:purple"]
ax.barh(names, [timings[n] for n in names], color=colors)
ax.set_xscale("log")
ax.invert_yaxis()
ax.set_xlabel("seconds (log scale)")
ax.set_title(f"one convolution: x {x.shape}, W {w.shape}")
fig.tight_layout()
show_or_save(fig, "01_conv_timing.png")

# %% [markdown]
# ## NumPy or Numba?
#
# The NumPy and Numba versions differ only in how they copy (im2col) and add back (col2im,
# the backward of lesson 02). The NumPy im2col is already a single C-level copy of a strided
# view; col2im has to loop over the $k^2$ kernel offsets in Python. The Numba twins are the
# plain loops, compiled and split across cores. Which is faster depends on the machine, its cores and
# what else runs on it, so measure rather than guess, on a batch the size of a training step:

# %%
from numpy_resnet.kernels import col2im_numpy  # noqa: E402
from numpy_resnet.kernels.im2col_numba import col2im_numba  # noqa: E402

batch = pick((8, 16, 16, 16), (128, 16, 32, 32))
xb = g.standard_normal(batch).astype(np.float32)
cols_b = im2col_numpy(xb, k, k, stride, padding)
check(np.allclose(col2im_numba(cols_b, xb.shape, k, k, stride, padding),
                  col2im_numpy(cols_b, xb.shape, k, k, stride, padding), atol=1e-4),
      "the Numba and NumPy col2im agree")
kernel_times = [
    ["im2col", best_time(lambda: im2col_numpy(xb, k, k, stride, padding), repeat),
     best_time(lambda: im2col_numba(xb, k, k, stride, padding), repeat)],
    ["col2im", best_time(lambda: col2im_numpy(cols_b, xb.shape, k, k, stride, padding), repeat),
     best_time(lambda: col2im_numba(cols_b, xb.shape, k, k, stride, padding), repeat)],
]
print(f"x {batch}, 3x3 kernel, padding 1:")
print_table(["kernel", "NumPy s", "Numba s", "NumPy / Numba"],
            [[name, f"{t_np:.4f}", f"{t_nb:.4f}", f"{t_np / t_nb:.2f}"]
             for name, t_np, t_nb in kernel_times])

# %% [markdown]
# ## The library version
#
# `numpy_resnet/nn/conv.py` is the code above plus groups and the backward pass (lesson 02),
# and it is what `nn.Conv2d` ran in this lesson's checks. The engine is a switch:
# `numpy_resnet.use_engine("reference")`, in this lesson's first cell, runs every layer's
# own code in `nn/`; `use_engine("fast")`, the default, runs the fast twins of the layers
# in `numpy_resnet/engine/` in their place. `NUMBA_DISABLE_JIT=1` turns the Numba kernels
# back into plain Python you can step through in a debugger.
# `numpy_resnet/kernels/im2col_numba.py` is worth reading next to `im2col_numpy.py`: the
# same indexing, once as loops, once as a strided view.
#
# The fast engine's `nn.Conv2d` (`numpy_resnet/engine/layers.py`, calling
# `numpy_resnet/kernels/conv_nhwc.py`) goes one step further: it keeps activations
# *channels-last* (the C values of a pixel side by side, PyTorch's `channels_last`), builds
# `cols` with one row per output pixel, and never makes it whole: each core fills a chunk
# of rows that fits in its cache and multiplies it at once (and 3x3 layers with 16 channels
# or more take Winograd's route, lesson 11). The timing table's last row is that layer;
# exercise 6 asks why the memory layout matters.

# %%
if not QUICK:
    print(conv)

# %% [markdown]
# ## Exercises
#
# 1. Change `stride` to 2. Predict `H_out` from the formula before you run it, and check
#    that the three methods still agree.
# 2. Write `im2col` with four Python loops over $(c, i, j)$ and $(h_o, w_o)$ and compare
#    it with `im2col_numpy`. How much slower is it than the stride-trick version?
# 3. How many bytes does `cols` take for the first layer of ResNet-18 on a batch of 64
#    ImageNet images (224x224, 7x7 kernel, stride 2, padding 3)? Is that a problem?
# 4. A 1x1 convolution needs no im2col at all. Why? Write it as a single `np.einsum`.
# 5. `groups=2` splits the channels into two independent convolutions. Run
#    `conv2d_naive(..., groups=2)` and reproduce it with two GEMMs.
# 6. In channels-last memory, which values does one row of `cols` copy, and how many
#    separate runs of contiguous memory are they for a 3x3 kernel? Compare with one row of
#    the NCHW `cols` above. (`with use_engine("fast"): y = conv(x)`, then look at `y.strides`.)
