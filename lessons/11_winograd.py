# %% [markdown]
# # Lesson 11 — Fast convolution: Winograd's F(2×2, 3×3)
#
# **Goal:** compute a 3x3 convolution with 2.25 times fewer multiplications than its
# definition, see that it gives the same numbers, and see when the saving is real time.
#
# Run it with `python lessons/11_winograd.py` (add `NUMPY_RESNET_QUICK=1` for tiny sizes),
# or open it as a notebook. It builds on lesson 01 (im2col + GEMM).
#
# ## The math, in one dimension
#
# Two outputs of a 3-tap filter $g$ over four inputs $d_0..d_3$ take six multiplications
# by the definition, $y_0 = d_0 g_0 + d_1 g_1 + d_2 g_2$ and $y_1 = d_1 g_0 + d_2 g_1 + d_3 g_2$.
# Winograd (1980) needs four:
#
# $$m_1 = (d_0 - d_2)\, g_0 \qquad m_2 = (d_1 + d_2)\, \tfrac{g_0 + g_1 + g_2}{2} \qquad
#   m_3 = (d_2 - d_1)\, \tfrac{g_0 - g_1 + g_2}{2} \qquad m_4 = (d_1 - d_3)\, g_2$$
# $$y_0 = m_1 + m_2 + m_3 \qquad y_1 = m_2 - m_3 - m_4$$
#
# The terms in $g$ depend on the filter alone, so a network computes them once per layer;
# what is left per output pair is 4 multiplications and some additions. In matrix form,
# with $B^T$ (4×4), $G$ (4×3) and $A^T$ (2×4) made of 0, ±1 and ±½:
#
# $$y = A^T \left[ (G g) \odot (B^T d) \right]$$
#
# ## Two dimensions
#
# Nesting the 1-D algorithm in itself (Lavin & Gray, 2016) gives a 2×2 tile $Y$ of outputs
# from the 4×4 tile $d$ of the padded input under it:
#
# $$Y = A^T \left[ (G g G^T) \odot (B^T d B) \right] A$$
#
# 16 multiplications instead of $2 \cdot 2 \cdot 9 = 36$. With $C_{in}$ input and $C_{out}$
# output channels, the sum over input channels turns the 16 elementwise products into 16
# matrix products, one per position $p$ of the 4×4 tile:
#
# $$M[p] = V[p] \cdot U[p]^T, \qquad V[p]: (\text{tiles}, C_{in}), \quad U[p]: (C_{out}, C_{in})$$
#
# where $V = B^T d B$ for every tile and $U = G g G^T$ for every kernel. These are GEMMs
# with $16\, C_{in} C_{out}$ multiply-adds per tile, against im2col's $36\, C_{in} C_{out}$.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, best_time, check, pick, print_table, rng, show_or_save

from numpy_resnet import use_engine
from numpy_resnet.kernels import conv2d_naive, conv_nhwc, winograd

use_engine("reference")  # any layer here runs its code in nn/; the fast kernels are called by name
print(f"mode: {MODE}")

# %% [markdown]
# ## One dimension, by hand
#
# The four products above, written out, against the two dot products of the definition.

# %%
g = rng(0)
d, w1 = g.standard_normal(4), g.standard_normal(3)
m1 = (d[0] - d[2]) * w1[0]
m2 = (d[1] + d[2]) * (w1[0] + w1[1] + w1[2]) / 2
m3 = (d[2] - d[1]) * (w1[0] - w1[1] + w1[2]) / 2
m4 = (d[1] - d[3]) * w1[2]
y_winograd = np.array([m1 + m2 + m3, m2 - m3 - m4])
y_direct = np.array([d[0:3] @ w1, d[1:4] @ w1])
print("direct   ", y_direct)
print("Winograd ", y_winograd)
check(np.allclose(y_winograd, y_direct, rtol=1e-13), "4 multiplications give the 2 outputs of 6")

B_T, G, A_T = winograd.B_T, winograd.G, winograd.A_T
check(np.allclose(A_T @ ((G @ w1) * (B_T @ d)), y_direct, rtol=1e-13),
      "the matrix form y = Aᵀ[(G g) ⊙ (Bᵀ d)] is the same algorithm")

# %% [markdown]
# ## One 2×2 tile
#
# A 4×4 patch of one input channel and one 3×3 kernel: the four outputs of a "valid"
# convolution, by the definition and by $A^T [(G g G^T) \odot (B^T d B)] A$.

# %%
d2, g2 = g.standard_normal((4, 4)), g.standard_normal((3, 3))
Y = A_T @ ((G @ g2 @ G.T) * (B_T @ d2 @ B_T.T)) @ A_T.T
Y_direct = conv2d_naive(d2[None, None], g2[None, None])[0, 0]
print("direct\n", Y_direct, "\nWinograd\n", Y)
check(np.allclose(Y, Y_direct, rtol=1e-12), "F(2x2, 3x3): 16 multiplications give the 4 outputs of 36")

# %% [markdown]
# ## A whole layer
#
# `winograd.conv3x3_reference` is the layer in four einsums, one per equation: cut the padded
# input into overlapping 4×4 tiles (stride 2), transform tiles and kernels, multiply and sum
# over input channels, transform back. `winograd.conv3x3_forward` is the fast engine's version
# of the same equations: channels-last memory, a few images at a time so that $V$ and $M$
# stay in the cache, the 16 products as BLAS GEMMs, Numba loops for the transforms. Both
# should be the convolution itself, in float64 to the last digits and in float32 to its
# rounding.

# %%
N, C_in, C_out, H = pick((2, 8, 8, 9), (8, 32, 32, 16))        # an odd H: the last tile is cut
x = g.standard_normal((N, C_in, H, H))
w = g.standard_normal((C_out, C_in, 3, 3)) / np.sqrt(9 * C_in)
y_naive = conv2d_naive(x, w, None, 1, 1)
y_reference = winograd.conv3x3_reference(x, w)
y_fast = conv_nhwc.from_nhwc(winograd.conv3x3_forward(conv_nhwc.to_nhwc(x), w, None))
scale = np.abs(y_naive).max()
print(f"float64, x {x.shape}: reference {np.abs(y_reference - y_naive).max() / scale:.1e}, "
      f"fast {np.abs(y_fast - y_naive).max() / scale:.1e} (largest error / largest output)")
check(np.allclose(y_reference, y_naive, rtol=1e-12, atol=1e-12 * scale),
      "the einsum definition is the convolution")
check(np.allclose(y_fast, y_naive, rtol=1e-12, atol=1e-12 * scale),
      "the fast kernels are the convolution")

x32, w32 = x.astype(np.float32), w.astype(np.float32)
y32 = conv_nhwc.from_nhwc(winograd.conv3x3_forward(conv_nhwc.to_nhwc(x32), w32, None))
error32 = np.abs(y32 - y_naive).max() / scale
print(f"float32: largest error {error32:.1e} of the largest output")
check(error32 < 1e-5, "in float32 the error is float32 rounding (the transforms add a few terms)")

# %% [markdown]
# ## When is it faster?
#
# Fewer multiplications is not yet less time: the transforms read and write every tile,
# and 16 GEMMs with $C_{in}$ inner terms run slower per FLOP than one with $9 C_{in}$. So
# we time both routes of the fast engine's convolution on 3x3 convs of ResNet-18 (CIFAR
# stem), calling its kernel `conv_nhwc.conv2d_forward` directly: with few channels the
# transforms cost about what they save; with many, the GEMMs dominate and the 2.25x shows.
# (On the fast engine `nn.Conv2d` takes Winograd's route from `winograd.MIN_CHANNELS`
# channels up; `winograd.ENABLED = False` turns it off.)

# %%
batch = pick(8, 64)
layers = pick([(16, 32), (32, 16)],                  # (channels, image size): ResNet-18's
               [(16, 32), (32, 16), (64, 8), (128, 4), (256, 8)])     # at width 16, then 64
rows, speedups, errors = [], [], []
for width, size in layers:
    xw = conv_nhwc.from_nhwc(g.standard_normal((batch, size, size, width)).astype(np.float32))
    ww = (g.standard_normal((width, width, 3, 3)) / np.sqrt(9 * width)).astype(np.float32)
    times, outputs = {}, {}
    for route, enabled in (("im2col", False), ("Winograd", True)):
        winograd.ENABLED = enabled
        def forward(xw=xw, ww=ww):
            return conv_nhwc.conv2d_forward(xw, ww, None, 1, 1)
        outputs[route] = forward()
        times[route] = best_time(forward, pick(2, 5))
    winograd.ENABLED = True
    errors.append(np.abs(outputs["Winograd"] - outputs["im2col"]).max() / np.abs(outputs["im2col"]).max())
    speedups.append(times["im2col"] / times["Winograd"])
    rows.append([f"{width}->{width}", f"{batch}x{width}x{size}x{size}", f"{1e3 * times['im2col']:.2f}",
                 f"{1e3 * times['Winograd']:.2f}", f"{speedups[-1]:.2f}x", f"{errors[-1]:.0e}"])
print_table(["conv 3x3", "input", "im2col ms", "Winograd ms", "speed-up", "difference"], rows)
check(max(errors) < 1e-5, "on every layer the two routes agree to float32 rounding "
      "(the speed-ups are measured, not asserted: they depend on the machine)")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([r[0] for r in rows], speedups, color="tab:green")
ax.axhline(1, color="gray", lw=1)
ax.axhline(2.25, color="tab:red", lw=1, ls="--", label="2.25x: the multiplications saved")
ax.set_ylabel("im2col time / Winograd time")
ax.set_xlabel("channels (3x3 conv, stride 1)")
ax.legend(loc="upper left", fontsize=8)
ax.set_title(f"Winograd F(2x2, 3x3) against im2col + GEMM, batch {batch}")
fig.tight_layout()
show_or_save(fig, "11_winograd_speedup.png")

# %% [markdown]
# ## The library version
#
# `numpy_resnet/kernels/winograd.py` holds the three matrices, the einsum reference and the
# fast kernels side by side. Two details there are worth reading. The transforms are written
# so that the compiler can turn their loops into SIMD instructions: each inner loop writes one
# array and runs over one contiguous run of memory, which is why the input's even and odd
# columns are stored apart. And the 16 planes of $V$ and $M$ are kept a few values more than
# a multiple of 4 KiB apart, because the CPU mistakes a store to one plane for a load from
# another when their addresses agree in the low 12 bits.
#
# The backward pass (`winograd.conv3x3_backward`) runs the same linear steps backwards:
# dY's tiles transformed like the input's, 16 GEMMs for the kernels' gradient and 16 for the
# tiles', and each tile's 4×4 gradient added back where the tile came from (lesson 02's
# col2im, for overlapping tiles). Exercise 5 asks you to derive it.
#
# ## Exercises
#
# 1. Count the additions of the 1-D algorithm (including the filter terms, once) and of the
#    direct one. When is trading multiplications for additions a good deal?
# 2. Check numerically that $A^T[(G g G^T) \odot (B^T d B)]A$ is linear in $d$ and in $g$.
#    Which one of them could you transform once for a whole training step?
# 3. F(4×4, 3×3) uses 6×6 tiles: 36 multiplications for 16 outputs, 4x fewer than direct.
#    Look its matrices up (Lavin & Gray, section 4.2), extend `conv3x3_reference` to them and
#    compare its float32 error with F(2×2, 3×3)'s. Why does the error grow with the tile?
# 4. A stride-2 convolution cannot use these tiles directly. Why not?
# 5. Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A is linear in d. Write dL/dd for one tile in terms of
#    dL/dY, and check it against finite differences; then compare with
#    `_transform_input_adjoint` in `numpy_resnet/kernels/winograd.py`.
