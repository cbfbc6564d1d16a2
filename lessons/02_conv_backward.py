# %% [markdown]
# # Lesson 02 — The backward pass of a convolution, and how to check it
#
# **Goal:** derive $dL/dX$, $dL/dW$ and $dL/db$ for a convolution, implement them with
# im2col, and check them against finite differences, learning to read the relative error
# (float64 vs float32, and the kinks of ReLU).
#
# ## The math
#
# Lesson 01 wrote the forward as one matrix product:
#
# $$\text{cols} = \text{im2col}(x) \quad (C_{in}k^2,\ N H_{out} W_{out}), \qquad
#   Y = W_{mat}\,\text{cols} + b \quad (C_{out},\ N H_{out} W_{out}).$$
#
# Let $G = \partial L / \partial Y$ (same shape as $Y$) be the gradient handed down from the
# layer above. $Y$ is linear in $W_{mat}$, in $b$ and in cols, so each gradient is one
# product (check the shapes: every one is forced):
#
# $$\frac{\partial L}{\partial W_{mat}} = G\,\text{cols}^T, \qquad
#   \frac{\partial L}{\partial b_o} = \sum_{n, h, w} G_{o,(n,h,w)}, \qquad
#   \frac{\partial L}{\partial\,\text{cols}} = W_{mat}^T\,G.$$
#
# Finally cols is a *linear* function of $x$: $\text{cols} = A x$ for a 0/1 matrix $A$ that
# copies pixels. The gradient of a linear map is its transpose, $\partial L/\partial x =
# A^T\,\partial L/\partial\text{cols}$, and $A^T$ is **col2im**: it sends every column entry
# back to the pixel it came from and *adds* the entries that share a pixel (windows overlap
# whenever the stride is smaller than the kernel).
#
# $$\frac{\partial L}{\partial x} = \text{col2im}\left(W_{mat}^T\,G\right).$$

# %%
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, check, pick, print_table, rng, show_or_save

from numpy_resnet import kernels, nn, use_engine
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.kernels import conv2d_naive, conv_output_size

use_engine("reference")  # the checks below run the code in nn/ you are reading, not the fast engine's twins
print(f"mode: {MODE}")

# %% [markdown]
# ## The backward from scratch
#
# Four lines, each the equation above it. We run it beside the library's `Conv2d.backward`
# on the same input, weights and upstream gradient.

# %%
N, C_in, C_out, H = pick((2, 3, 4, 6), (4, 8, 16, 16))
k, stride, padding = 3, 1, 1
g = rng(0)
x = g.standard_normal((N, C_in, H, H))
conv = nn.Conv2d(C_in, C_out, k, stride=stride, padding=padding).to(np.float64)
W, b = conv.weight.data, conv.bias.data
H_out = conv_output_size(H, k, stride, padding)
dy = g.standard_normal((N, C_out, H_out, H_out))            # G, from "the layer above"


def conv_backward(x, W, dy):
    """x: (N, C_in, H, W), dy: (N, C_out, H_out, W_out) -> dx, dW, db."""
    cols = kernels.im2col(x, k, k, stride, padding)           # (C_in·k·k, N·H_out·W_out)
    G = dy.transpose(1, 0, 2, 3).reshape(C_out, -1)           # (C_out, N·H_out·W_out)
    dW = (G @ cols.T).reshape(W.shape)                        # dW = G colsᵀ
    db = G.sum(axis=1)                                        # db = Σ G
    dcols = W.reshape(C_out, -1).T @ G                        # dcols = W_matᵀ G
    dx = kernels.col2im(dcols, x.shape, k, k, stride, padding)   # dx = col2im(dcols)
    return dx, dW, db


dx, dW, db = conv_backward(x, W, dy)

conv.zero_grad()
conv(x)
dx_layer = conv.backward(dy)
check(np.allclose(dx, dx_layer), "our dx equals Conv2d.backward's")
check(np.allclose(dW, conv.weight.grad), "our dW equals conv.weight.grad")
check(np.allclose(db, conv.bias.grad), "our db equals conv.bias.grad")

# %% [markdown]
# ## col2im is the transpose of im2col
#
# "The transpose" has a test that needs no matrix: for any $x$ and any $c$ of the right
# shapes, $\langle \text{im2col}(x), c\rangle = \langle x, \text{col2im}(c)\rangle$. This one
# line catches most col2im bugs.

# %%
cols_shape = kernels.im2col(x, k, k, stride, padding).shape
c = g.standard_normal(cols_shape)
lhs = np.vdot(kernels.im2col(x, k, k, stride, padding), c)
rhs = np.vdot(x, kernels.col2im(c, x.shape, k, k, stride, padding))
print(f"<im2col(x), c> = {lhs:.10f}\n<x, col2im(c)> = {rhs:.10f}")
check(np.isclose(lhs, rhs, rtol=1e-12), "im2col and col2im are adjoint")

# %% [markdown]
# ## dx is itself a convolution
#
# Written out without matrices, for stride 1: every $x$ pixel receives $G$ from each
# output its window touched, weighted by the kernel entry it met there. That is a
# convolution of $G$ with the kernel flipped in space and with input and output channels
# swapped, $W'[c, o, i, j] = W[o, c, k-1-i, k-1-j]$, padded by $k - 1 - p$:

# %%
W_flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)      # (C_in, C_out, k, k)
dx_as_conv = conv2d_naive(dy, W_flipped, padding=k - 1 - padding)
check(np.allclose(dx_as_conv, dx), "dx = conv(G, flipped and transposed W), padding k-1-p")

# %% [markdown]
# ## Finite differences
#
# To check a gradient without trusting any derivation, nudge one number and watch the
# loss. With a random upstream gradient $G$ take the scalar $L(\theta) = \sum G \odot
# \text{conv}(x; \theta)$, whose exact gradient is what `backward(G)` computes. The central
# difference
#
# $$\frac{\partial L}{\partial \theta_i} \approx \frac{L(\theta + h e_i) - L(\theta - h e_i)}{2h}$$
#
# has error $O(h^2)$ (the $h^2$ terms of the two Taylor series cancel). We compare with the
# **relative error** $|a - n| / \max(|a|, |n|)$, since gradients range over many orders of
# magnitude.

# %%
def loss_at(weight):
    layer = nn.Conv2d(C_in, C_out, k, stride=stride, padding=padding).to(weight.dtype)
    layer.weight.data = weight
    layer.bias.data = b.astype(weight.dtype)
    return np.vdot(dy.astype(weight.dtype), layer(x.astype(weight.dtype)))


entry, h = (1, 2, 0, 1), 1e-5
plus, minus = W.copy(), W.copy()
plus[entry] += h
minus[entry] -= h
numeric = (loss_at(plus) - loss_at(minus)) / (2 * h)
analytic = dW[entry]
rel = abs(analytic - numeric) / max(abs(analytic), abs(numeric))
print(f"dL/dW{entry}: analytic {analytic:.10f}, numeric {numeric:.10f}, relative error {rel:.1e}")
check(rel < 1e-7, "one weight's gradient agrees with its central difference")

# %% [markdown]
# The library's `gradcheck` does this for every entry of the input and of each parameter
# (in float64, on a copy of the module), and reports the worst relative error per tensor.
# A correct backward gives about $10^{-8}$ or less; the pass mark is $10^{-6}$.

# %%
conv_s2 = nn.Conv2d(C_in, C_out, k, stride=2, padding=1)
report = gradcheck(conv_s2, g.standard_normal((2, C_in, 7, 7)), max_checks=pick(60, None))
print(report)
check(report.ok(), "Conv2d stride 2: every tensor within 1e-6 of finite differences")

# %% [markdown]
# ## What a bug looks like
#
# Suppose col2im *overwrote* where it should add (`=` instead of `+=`), so a pixel shared by
# several windows keeps only the last one's gradient. The forward is untouched, and so are
# dW and db; only dx is wrong. The report says which tensor is wrong, which is where to look.
# (We plant the bug in `kernels.col2im`, which `nn/conv.py` calls: this lesson runs on the
# reference engine, so `Conv2d` is that code. The fast engine computes dx another way, in
# `kernels/conv_nhwc.py`.)

# %%
def col2im_overwrite(cols, x_shape, kh, kw, stride, padding):
    """The bug: each kernel offset overwrites instead of adding where windows overlap."""
    N_, C, H_, W_ = x_shape
    Ho, Wo = conv_output_size(H_, kh, stride, padding), conv_output_size(W_, kw, stride, padding)
    cols = cols.reshape(C, kh, kw, N_, Ho, Wo)
    dx_pad = np.zeros((N_, C, H_ + 2 * padding, W_ + 2 * padding))
    for i in range(kh):
        for j in range(kw):
            dx_pad[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride] = \
                cols[:, i, j].transpose(1, 0, 2, 3)          # BUG: should be +=
    return dx_pad[:, :, padding:padding + H_, padding:padding + W_]


with mock.patch.object(kernels, "col2im", col2im_overwrite):
    buggy = gradcheck(conv_s2, g.standard_normal((2, C_in, 7, 7)), max_checks=60)
print(buggy)
check(buggy.errors["input"] > 0.1 and buggy.errors["weight"] < 1e-6,
      "the overwrite bug shows in the input gradient only")

# %% [markdown]
# ## Reading the relative error: h, float64 and float32
#
# The finite difference has two errors pulling opposite ways: the **truncation** error
# $O(h^2)$ shrinks with $h$, the **rounding** error $\approx \epsilon_{mach} |L| / h$ grows as
# $h$ shrinks (two nearly equal numbers are subtracted). The best $h$ balances them, near
# $\epsilon_{mach}^{1/3}$: about $10^{-5}$ in float64 ($\epsilon = 2.2\times10^{-16}$) and
# about $5\times10^{-3}$ in float32 ($\epsilon = 1.2\times10^{-7}$), and the best error
# is then about $\epsilon^{2/3}$: near $10^{-11}$ in float64, but only $10^{-5}$ in
# float32, no better than the $10^{-6}$ pass mark. This is why gradient checks run in
# float64: in float32 a correct backward and a slightly wrong one look the same.
#
# $L = \sum G \odot y$ is linear in each weight, so its truncation error is zero (as it is
# for any quadratic: the central difference is exact there). To see both effects we take
# a curved loss, $L = \sum G \odot \tanh(y)$, whose upstream gradient is
# $\partial L/\partial y = G \odot (1 - \tanh^2 y)$.

# %%
def curved_loss_at(weight):
    layer = nn.Conv2d(C_in, C_out, k, stride=stride, padding=padding).to(weight.dtype)
    layer.weight.data = weight
    layer.bias.data = b.astype(weight.dtype)
    return np.vdot(dy.astype(weight.dtype), np.tanh(layer(x.astype(weight.dtype))))


conv.zero_grad()
y = conv(x)
conv.backward(dy * (1 - np.tanh(y) ** 2))                      # dL/dy = G ⊙ (1 - tanh² y)
analytic = conv.weight.grad[entry]

hs = np.logspace(-9, -1, pick(9, 33))
errors = {}
for dtype in (np.float64, np.float32):
    W_t = W.astype(dtype)
    row = []
    for h in hs:
        plus, minus = W_t.copy(), W_t.copy()
        plus[entry] += dtype(h)
        minus[entry] -= dtype(h)
        numeric = float(curved_loss_at(plus) - curved_loss_at(minus)) / (2 * h)
        row.append(abs(numeric - analytic) / abs(analytic))
    errors[np.dtype(dtype).name] = np.array(row)

best = {name: (hs[e.argmin()], e.min()) for name, e in errors.items()}
print_table(["dtype", "best h", "best relative error"],
            [[name, f"{bh:.0e}", f"{be:.1e}"] for name, (bh, be) in best.items()])
check(best["float64"][1] < 1e-8, "float64 reaches a relative error below 1e-8")
check(best["float32"][1] > 1000 * best["float64"][1],
      "float32's best error is more than 1000 times float64's")

fig, ax = plt.subplots(figsize=(6, 4))
for name, e in errors.items():
    ax.loglog(hs, np.maximum(e, 1e-17), "o-", label=name, markersize=3)
ax.axhline(1e-6, color="gray", linestyle="--", label="pass mark 1e-6")
ax.set(xlabel="step h", ylabel="relative error of the central difference",
       title="truncation (right) vs rounding (left)")
ax.legend()
ax.grid(alpha=0.3, which="both")
show_or_save(fig, "02_finite_difference_error.png")

# %% [markdown]
# ## Kinks
#
# ReLU has no derivative at 0 (PyTorch, and we, use 0 there). If $x$ sits within $h$ of
# the kink, the central difference straddles it and measures the average of the two
# slopes: $(\text{relu}(x+h) - \text{relu}(x-h)) / 2h$ is neither 0 nor 1. That is no bug in
# the backward, so `gradcheck` compares the left and right one-sided differences, and when
# they disagree it counts the entry as a *kink* and leaves it out of the error.

# %%
x_kink, h = 3e-6, 1e-5
numeric = (max(x_kink + h, 0) - max(x_kink - h, 0)) / (2 * h)
print(f"relu at x = {x_kink}: backward says 1, the central difference with h = {h} says {numeric}")

x_relu = g.standard_normal((2, 3, 4, 4))
x_relu[0, 0, 0, :3] = [0.0, 2e-6, -4e-6]                      # three entries near the kink
report = gradcheck(nn.ReLU(), x_relu)
print(report)
kinks = report.tensors[0].kinks
check(kinks == 3 and report.ok(), "the three entries near 0 are flagged as kinks; the rest pass")

# %% [markdown]
# ## The library version
#
# `numpy_resnet/nn/conv.py` holds the same four lines (plus groups), and
# `numpy-resnet gradcheck` runs `gradcheck` on every layer of the library, printing one row
# per tensor (the cases are in `numpy_resnet/gradcheck_cases.py`).
#
# ## Exercises
#
# 1. Set `stride = 2` at the top. Does the flipped-kernel formula for dx still hold? (Hint:
#    a strided convolution's transpose inserts zeros between the entries of $G$.)
# 2. Break `conv_backward` on purpose: transpose `G` the wrong way, or forget the bias
#    sum's axis. Which check fails, and what does `gradcheck` report?
# 3. Why does gradcheck use a random $G$ and not `np.ones_like(y)`? Find a wrong BatchNorm
#    backward that passes with ones (lesson 03 has the formula).
# 4. Rerun the h sweep in float16. The layers run float32 and float64 only (the fast engine's
#    kernels are compiled for those), so compute the loss with the six loops:
#    `np.vdot(dy16, np.tanh(conv2d_naive(x16, weight, b16, stride, padding)))` on float16
#    arrays. Where is the best h now, and what is the best error? Compare with $\epsilon^{1/3}$.
# 5. Gradcheck `nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())` with
#    `kink_tol=1e9` (no kink detection) on an input with exact zeros in it. What happens?
