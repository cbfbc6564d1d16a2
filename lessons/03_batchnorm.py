# %% [markdown]
# # Lesson 03 — Batch normalisation
#
# **Goal:** derive BatchNorm's backward pass twice, step by step through its computational
# graph and in the compact form the library uses, check that they agree, and get the
# train/eval difference and PyTorch's running-statistics conventions exactly right.
#
# ## The math
#
# For each channel $c$, over the $M = N \cdot H \cdot W$ values $x_i$ of the batch
# (Ioffe & Szegedy, 2015):
#
# $$\mu = \frac1M \sum_i x_i, \qquad \sigma^2 = \frac1M \sum_i (x_i - \mu)^2, \qquad
#   \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y_i = \gamma \hat x_i + \beta.$$
#
# Every $x_i$ reaches the loss three ways: directly through $\hat x_i$, and through $\mu$ and
# $\sigma^2$, which depend on *all* the $x_j$. That is what makes the backward interesting.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, check, pick, print_table, rng, show_or_save

from numpy_resnet import nn, use_engine
from numpy_resnet.gradcheck import gradcheck

use_engine("reference")  # the checks below run the code in nn/ you are reading, not the fast engine's twins
print(f"mode: {MODE}")
AXES = (0, 2, 3)          # a channel's values: over the batch and the image


def per_channel(v):
    """(C,) -> (1, C, 1, 1), to broadcast against (N, C, H, W)."""
    return v[None, :, None, None]


# %% [markdown]
# ## The backward, one node at a time
#
# Write the forward as a chain of small steps, each simple enough to differentiate on
# sight, and walk it backwards. Every step of the backward is the chain rule for one node;
# where a node fed several others (here `xc` feeds both `var` and `xhat`) the gradients
# *add*; where a node was a sum or a mean over the batch, its gradient is broadcast back.
#
# | forward | backward |
# |---|---|
# | `mu = mean(x)` | `dx += dmu / M` (broadcast) |
# | `xc = x - mu` | `dx += dxc`,  `dmu = -Σ dxc` |
# | `var = mean(xc²)` | `dxc += dvar · 2 xc / M` |
# | `std = √(var + ε)` | `dvar = dstd / (2 std)` |
# | `inv = 1 / std` | `dstd = -dinv / std²` |
# | `xhat = xc · inv` | `dxc = dxhat · inv`,  `dinv = Σ dxhat · xc` |
# | `y = γ xhat + β` | `dxhat = dy · γ`,  `dγ = Σ dy · xhat`,  `dβ = Σ dy` |

# %%
def batchnorm_staged(x, gamma, beta, eps=1e-5):
    """Forward of BatchNorm in train mode, keeping every intermediate for the backward."""
    M = x.shape[0] * x.shape[2] * x.shape[3]
    mu = x.mean(axis=AXES)                                   # (C,)
    xc = x - per_channel(mu)                                 # (N, C, H, W)
    var = (xc ** 2).mean(axis=AXES)                          # (C,)
    std = np.sqrt(var + eps)
    inv = 1.0 / std
    xhat = xc * per_channel(inv)
    y = per_channel(gamma) * xhat + per_channel(beta)
    return y, (xc, std, inv, xhat, gamma, M)


def batchnorm_staged_backward(dy, cache):
    """The table above, bottom row to top row."""
    xc, std, inv, xhat, gamma, M = cache
    dbeta = dy.sum(axis=AXES)
    dgamma = (dy * xhat).sum(axis=AXES)
    dxhat = dy * per_channel(gamma)
    dinv = (dxhat * xc).sum(axis=AXES)
    dxc = dxhat * per_channel(inv)
    dstd = -dinv / std ** 2
    dvar = dstd / (2 * std)
    dxc = dxc + per_channel(dvar) * 2 * xc / M               # xc fed var as well: add
    dmu = -dxc.sum(axis=AXES)
    dx = dxc + per_channel(dmu) / M                          # x fed mu as well: add
    return dx, dgamma, dbeta


g = rng(0)
N, C, H = pick((4, 3, 3), (16, 8, 8))
x = g.standard_normal((N, C, H, H)) * 2 + 1
gamma, beta = g.standard_normal(C), g.standard_normal(C)
dy = g.standard_normal(x.shape)

y_staged, cache = batchnorm_staged(x, gamma, beta)
dx_staged, dgamma_staged, dbeta_staged = batchnorm_staged_backward(dy, cache)

# %% [markdown]
# ## The compact form
#
# Collapse the chain by hand (substitute each line into the next) and everything but three
# per-channel sums cancels:
#
# $$\frac{\partial L}{\partial x_i} = \frac{\gamma}{M\sqrt{\sigma^2+\epsilon}}
#   \Big(M\,dy_i - \sum_j dy_j - \hat x_i \sum_j dy_j\,\hat x_j\Big).$$
#
# Read it: the gradient of $\hat x$, minus its mean (because shifting all $x$ together does
# not change $\hat x$), minus its component along $\hat x$ (because scaling them together
# does not either). That is what `numpy_resnet/nn/batchnorm.py` computes. We check the two
# derivations against each other, and both against finite differences.

# %%
bn = nn.BatchNorm2d(C).to(np.float64)
bn.weight.data[:] = gamma
bn.bias.data[:] = beta
y_layer = bn(x)
dx_layer = bn.backward(dy)

print_table(["tensor", "max |staged - layer|"],
            [["y", f"{np.abs(y_staged - y_layer).max():.1e}"],
             ["dx", f"{np.abs(dx_staged - dx_layer).max():.1e}"],
             ["dγ", f"{np.abs(dgamma_staged - bn.weight.grad).max():.1e}"],
             ["dβ", f"{np.abs(dbeta_staged - bn.bias.grad).max():.1e}"]])
check(np.allclose(y_staged, y_layer), "the staged forward equals BatchNorm2d's")
check(np.allclose(dx_staged, dx_layer), "the staged dx equals the compact dx of BatchNorm2d")
check(np.allclose(dgamma_staged, bn.weight.grad) and np.allclose(dbeta_staged, bn.bias.grad),
      "dγ and dβ agree")

report = gradcheck(bn, x[:, :, :pick(3, 4), :pick(3, 4)], max_checks=pick(60, 200))
print(report)
check(report.ok(), "BatchNorm2d (train) passes the finite-difference check")

# %% [markdown]
# Two facts fall out of the compact form and are worth checking, since a wrong backward
# usually breaks them: per channel, $\sum_i \partial L/\partial x_i = 0$ and
# $\sum_i \hat x_i\,\partial L/\partial x_i = 0$. (Adding a constant to a channel, or scaling
# it, leaves the output unchanged, so the loss cannot change in those directions.) The second
# is exact only for $\epsilon = 0$: $\epsilon$ makes the output depend slightly on the scale.

# %%
check(np.allclose(dx_layer.sum(axis=AXES), 0), "Σ dx = 0 in every channel")
_, cache0 = batchnorm_staged(x, gamma, beta, eps=0.0)
dx0, _, _ = batchnorm_staged_backward(dy, cache0)
check(np.allclose((dx0 * cache0[3]).sum(axis=AXES), 0), "Σ x̂ · dx = 0 in every channel (ε = 0)")

# %% [markdown]
# ## Train and eval
#
# In training, an image's output depends on the other images in its batch. At test time
# we want a fixed function of one image, so BatchNorm keeps **running statistics** while it
# trains and uses them in eval mode, where $y = \gamma (x - \mu_{run}) / \sqrt{\sigma^2_{run}
# + \epsilon} + \beta$ is just an affine map per channel, and $dx = \gamma\,dy /
# \sqrt{\sigma^2_{run} + \epsilon}$.

# %%
other = g.standard_normal(x.shape) * 2 + 1
other[0] = x[0]                                  # the same first image, other batch-mates
bn.train()
check(not np.allclose(bn(x)[0], bn(other)[0]), "train mode: image 0's output depends on its batch")
bn.eval()
check(np.allclose(bn(x)[0], bn(other)[0]), "eval mode: image 0's output is its own")
report = gradcheck(bn, x[:, :, :3, :3], train=False, max_checks=pick(60, 200))
print(report)
check(report.ok(), "BatchNorm2d (eval) passes the finite-difference check")

# %% [markdown]
# ## Running statistics, PyTorch's conventions
#
# Two details decide whether weights move between frameworks without a silent accuracy
# drop (torchvision's checkpoints assume both):
#
# 1. **momentum weighs the new value**: $\mu_{run} \leftarrow (1 - m)\,\mu_{run} + m\,\mu$
#    with $m = 0.1$ (Keras' momentum is the opposite, 0.99 for the *old* value).
#    `momentum=None` makes it a plain cumulative average, $m = 1/t$ at step $t$.
# 2. **the stored variance is unbiased**, $\sigma^2 \cdot M / (M-1)$, while the
#    normalisation in training uses the biased $\sigma^2$.
#
# We replay three training steps by hand and compare with the layer's buffers.

# %%
bn = nn.BatchNorm2d(C).to(np.float64)            # running_mean = 0, running_var = 1
expected_mean, expected_var = np.zeros(C), np.ones(C)
for _ in range(3):
    xb = g.standard_normal((N, C, H, H)) * 3 + 2
    M = N * H * H
    bn(xb)
    mu, var = xb.mean(axis=AXES), xb.var(axis=AXES)          # var: biased, 1/M
    expected_mean = 0.9 * expected_mean + 0.1 * mu
    expected_var = 0.9 * expected_var + 0.1 * var * M / (M - 1)
check(np.allclose(bn.running_mean, expected_mean), "running_mean ← 0.9 running_mean + 0.1 μ")
check(np.allclose(bn.running_var, expected_var),
      "running_var ← 0.9 running_var + 0.1 σ² M/(M-1)  (unbiased)")
check(int(bn.num_batches_tracked) == 3, "num_batches_tracked counts the training steps")

# %% [markdown]
# Why unbiased? With few values per channel the biased variance is too small on average:
# $E[\sigma^2_{biased}] = \frac{M-1}{M}\sigma^2_{true}$. With $M = 4$ (a batch of four 1x1
# maps) that is 25% too small. A cumulative average (`momentum=None`) over many batches
# shows it, and the unbiased correction removes it.

# %%
steps, true_std = pick(400, 4000), 3.0
bn_avg = nn.BatchNorm2d(1, momentum=None).to(np.float64)
biased = []
for _ in range(steps):
    xb = g.normal(5.0, true_std, size=(4, 1, 1, 1))          # M = 4
    bn_avg(xb)
    biased.append(xb.var())
ratio_biased = np.mean(biased) / true_std ** 2
ratio_running = float(bn_avg.running_var[0]) / true_std ** 2
print(f"after {steps} batches of M = 4: mean biased σ² / true σ² = {ratio_biased:.3f} "
      f"(theory 0.75); running_var / true σ² = {ratio_running:.3f} (theory 1)")
check(abs(ratio_biased - 0.75) < 0.1 and abs(ratio_running - 1) < 0.1,
      "the biased estimate is about 3/4 of the truth, the stored running_var about right")

# %% [markdown]
# ## Figure: running statistics converge like $1 - 0.9^t$
#
# Feed batches whose channel has mean 2 and standard deviation 3 and watch the buffers.
# After $t$ steps from 0, the running mean has covered $1 - 0.9^t$ of the way: 65% after
# 10 steps, 99.5% after 50. A model evaluated after only a few training steps is therefore
# evaluated with statistics that are still mostly the initial 0 and 1.

# %%
bn = nn.BatchNorm2d(1).to(np.float64)
t_max = pick(30, 60)
trace_mean, trace_var = [], []
for _ in range(t_max):
    bn(g.normal(2.0, 3.0, size=(8, 1, 4, 4)))
    trace_mean.append(float(bn.running_mean[0]))
    trace_var.append(float(bn.running_var[0]))
t = np.arange(1, t_max + 1)
print(f"fraction of the way after 10 steps: 1 - 0.9^10 = {1 - 0.9 ** 10:.3f}; "
      f"after 50: {1 - 0.9 ** 50:.4f}")
check(abs(trace_mean[9] / 2.0 - (1 - 0.9 ** 10)) < 0.1,
      f"after 10 steps running_mean is {trace_mean[9]:.2f}, about (1 - 0.9^10) · 2 = "
      f"{2 * (1 - 0.9 ** 10):.2f}")

fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.plot(t, trace_mean, label="running_mean")
ax.plot(t, 2 * (1 - 0.9 ** t), "--", label="2 (1 - 0.9^t)")
ax.plot(t, trace_var, label="running_var")
ax.plot(t, 1 + (9 - 1) * (1 - 0.9 ** t), "--", label="1 + 8 (1 - 0.9^t)")
ax.axhline(2, color="gray", lw=0.5)
ax.axhline(9, color="gray", lw=0.5)
ax.set(xlabel="training step t", ylabel="buffer value",
       title="BatchNorm running statistics, momentum 0.1 (true mean 2, var 9)")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
show_or_save(fig, "03_running_stats.png")

# %% [markdown]
# ## The library version
#
# `numpy_resnet/nn/batchnorm.py`: forward, `_update_running_stats` and the compact
# backward, each next to its equation. `tests/test_torch_parity.py` checks it against
# `torch.nn.BatchNorm2d`, buffers included.
#
# ## Exercises
#
# 1. Derive the compact form from the staged one on paper: substitute `dvar` and `dmu`
#    and simplify. Where does $\sum_j dy_j \hat x_j$ come from?
# 2. Replace the random `dy` by `np.ones_like(x)`. What is dx? Now delete the
#    $\hat x_i \sum_j dy_j \hat x_j$ term from the staged backward: does a check with
#    ones notice? Does one with a random dy?
# 3. A network is trained with batch size 2 on 1x1 feature maps (M = 2). What goes wrong
#    in training, and what goes wrong in eval?
# 4. Keras' BatchNormalization weighs the *old* value with its momentum (default 0.99).
#    Which PyTorch momentum gives the same update? Look up which variance (biased or
#    unbiased) Keras stores, and say whether converting its buffers can be exact.
# 5. Freeze BatchNorm during fine-tuning (lesson 10) by putting it in eval mode. What does
#    its backward become, and why does the gradient check still pass?
