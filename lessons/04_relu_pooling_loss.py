# %% [markdown]
# # Lesson 04 — ReLU, pooling, the linear layer and the loss
#
# **Goal:** write down and check the backward of the small layers that surround the
# convolutions of a ResNet (ReLU, max and average pooling, global pooling, the final
# linear layer) and of softmax cross-entropy with label smoothing, whose gradient is
# simply $(p - q)/N$.
#
# ## The math
#
# | layer | forward | backward |
# |---|---|---|
# | ReLU | $y = \max(x, 0)$ | $dx = dy \cdot [x > 0]$ |
# | max pool | $y = \max_{window} x$ | $dy$ goes to the arg-max of each window, 0 elsewhere |
# | average pool | $y = \frac{1}{k^2}\sum_{window} x$ | each input of a window gets $dy / k^2$ |
# | global average pool | $y_{nc} = \frac{1}{HW}\sum_{h,w} x_{nchw}$ | $dx_{nchw} = dy_{nc} / (HW)$ |
# | linear | $y = x W^T + b$ | $dW = dy^T x,\ db = \sum_n dy,\ dx = dy\,W$ |
#
# Pooling windows overlap when the stride is smaller than the window (ResNet's stem uses a
# 3x3 max pool with stride 2), and then an input collects gradient from every window it
# won: the gradients **add**, exactly as in col2im.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, check, pick, print_table, rng, show_or_save

from numpy_resnet import nn, use_engine
from numpy_resnet.gradcheck import gradcheck

use_engine("reference")  # the checks below run the code in nn/ you are reading, not the fast engine's twins
print(f"mode: {MODE}")
g = rng(0)
np.set_printoptions(precision=2, suppress=True)

# %% [markdown]
# ## Max pooling routes, average pooling spreads
#
# One 4x4 channel, 2x2 windows with stride 2, and an upstream gradient of ones: max pooling
# sends each 1 to the largest entry of its window, average pooling gives every entry 1/4.

# %%
x = np.array([[1, 3, 2, 0],
              [4, 2, 1, 5],
              [0, 1, 3, 2],
              [2, 6, 1, 1]], dtype=np.float64).reshape(1, 1, 4, 4)
maxpool, avgpool = nn.MaxPool2d(2), nn.AvgPool2d(2)
y_max, y_avg = maxpool(x), avgpool(x)
dx_max = maxpool.backward(np.ones_like(y_max))
dx_avg = avgpool.backward(np.ones_like(y_avg))
print("x =\n", x[0, 0])
print("max pool y =\n", y_max[0, 0], "\n  dx =\n", dx_max[0, 0])
print("avg pool y =\n", y_avg[0, 0], "\n  dx =\n", dx_avg[0, 0])
window_maxima = np.array([[0, 0, 0, 0],
                          [1, 0, 0, 1],
                          [0, 0, 1, 0],
                          [0, 1, 0, 0]])
check(np.array_equal(dx_max[0, 0], window_maxima),
      "max pool: the gradient lands only on each window's maximum (4, 5, 3, 6)")
check(np.allclose(dx_avg, 0.25), "avg pool: every entry gets dy / 4")

# %% [markdown]
# With ResNet's overlapping stem pool (3x3, stride 2, padding 1) a large entry can win
# several windows; its gradient is the sum. Total gradient is conserved either way: every
# window hands on exactly its $dy$.

# %%
stem_pool = nn.MaxPool2d(3, stride=2, padding=1)
x_peak = -g.random((1, 1, 7, 7))    # negative background, no ties
x_peak[0, 0, 3, 3] = 1.0            # one bright pixel; windows start at rows -1, 1, 3, 5
y_peak = stem_pool(x_peak)
dx_peak = stem_pool.backward(np.ones_like(y_peak))
print(f"output {y_peak.shape[2:]}, y =\n{y_peak[0, 0]}\ndx =\n{dx_peak[0, 0]}")
check(dx_peak[0, 0, 3, 3] == 4, "the pixel that wins 4 overlapping windows receives 4 · dy")
check(dx_peak.sum() == y_peak.size, "Σ dx = Σ dy: each window passes on exactly its gradient")

# %% [markdown]
# ## The linear layer by hand
#
# $y = xW^T + b$ with $x: (N, in)$, $W: (out, in)$. Each gradient's shape fixes the product:
# $dW$ must be $(out, in)$, so $dy^T x$; $dx$ must be $(N, in)$, so $dy\,W$.

# %%
fc = nn.Linear(8, 5).to(np.float64)
x_fc = g.standard_normal((4, 8))
dy_fc = g.standard_normal((4, 5))
fc(x_fc)
dx_fc = fc.backward(dy_fc)
check(np.allclose(fc.weight.grad, dy_fc.T @ x_fc), "dW = dyᵀ x")
check(np.allclose(fc.bias.grad, dy_fc.sum(axis=0)), "db = Σ_n dy")
check(np.allclose(dx_fc, dy_fc @ fc.weight.data), "dx = dy W")

# %% [markdown]
# ## Softmax cross-entropy with label smoothing
#
# For logits $z: (N, K)$ and targets $t_n$:
#
# $$\log p_{nk} = z_{nk} - \log\sum_j e^{z_{nj}}, \qquad
#   q_{nk} = (1 - \varepsilon)[k = t_n] + \frac{\varepsilon}{K}, \qquad
#   L = -\frac1N \sum_n \sum_k q_{nk} \log p_{nk}.$$
#
# Label smoothing ($\varepsilon > 0$) asks for a little probability on every wrong class.
# Differentiate: $\partial \log p_{nk} / \partial z_{nj} = [j = k] - p_{nj}$, and since
# $\sum_k q_{nk} = 1$,
#
# $$\frac{\partial L}{\partial z_{nj}} = -\frac1N\Big(q_{nj} - p_{nj}\sum_k q_{nk}\Big)
#   = \frac{p_{nj} - q_{nj}}{N}.$$
#
# Softmax and log fused this way never divide by a small $p$; computing $\log p$ as
# $z - \text{logsumexp}(z)$ after subtracting $\max_k z_k$ never overflows.

# %%
N, K, eps = 6, 10, 0.1
z = g.standard_normal((N, K)) * 3
t = g.integers(0, K, N)
p = np.exp(z - z.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
q = np.full((N, K), eps / K)
q[np.arange(N), t] += 1 - eps
loss_by_hand = -(q * np.log(p)).sum() / N

criterion = nn.CrossEntropyLoss(label_smoothing=eps)
loss = criterion(z, t)
dz = criterion.backward()
print(f"loss by hand {loss_by_hand:.6f}, CrossEntropyLoss {loss:.6f}")
check(np.isclose(loss, loss_by_hand), "the loss matches the formula")
check(np.allclose(dz, (p - q) / N), "dL/dz = (p - q) / N")
check(np.isclose(nn.CrossEntropyLoss()(np.zeros((N, K)), t), np.log(K)),
      f"equal logits give loss log K = {np.log(K):.4f}, the loss of a fresh classifier")
check(np.allclose(nn.CrossEntropyLoss()(1000 + z, t), nn.CrossEntropyLoss()(z, t)),
      "adding 1000 to every logit changes nothing (and does not overflow)")

# %% [markdown]
# ## Every layer against finite differences

# %%
cases = [
    ("ReLU", nn.ReLU(), (2, 3, 4, 4), ()),
    ("MaxPool2d 2", nn.MaxPool2d(2), (2, 2, 4, 6), ()),
    ("MaxPool2d 3/2/1 (stem)", nn.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 6), ()),
    ("AvgPool2d 2", nn.AvgPool2d(2), (2, 3, 4, 6), ()),
    ("AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d(1), (2, 3, 4, 5), ()),
    ("Linear", nn.Linear(6, 4), (3, 6), ()),
    ("CrossEntropyLoss", nn.CrossEntropyLoss(), (5, 4), (g.integers(0, 4, 5),)),
    ("CrossEntropyLoss ε=0.1", nn.CrossEntropyLoss(label_smoothing=0.1), (5, 4),
     (g.integers(0, 4, 5),)),
]
rows = []
for name, layer, shape, extra in cases:
    report = gradcheck(layer, g.standard_normal(shape), *extra, max_checks=pick(40, None))
    kinks = sum(tc.kinks for tc in report.tensors)
    rows.append([name, " ".join(report.errors), f"{report.max_error:.1e}", kinks,
                 "yes" if report.ok() else "NO"])
print_table(["layer", "tensors", "max rel error", "kinks", "ok"], rows)
check(all(row[-1] == "yes" for row in rows), "every layer's backward matches finite differences")

# %% [markdown]
# ## Figure: what label smoothing asks of the logits
#
# Take one example of class 0 with logits $(m, 0, \dots, 0)$: $m$ is the margin of the right
# class over the others. Without smoothing the loss keeps falling as $m \to \infty$, so
# training keeps pushing the logits apart. With smoothing, the target $q_0 = 1 - \varepsilon
# + \varepsilon/K$ is reached at a finite margin: setting $p_0 = q_0$ gives
# $e^{m^*} = K(1-\varepsilon)/\varepsilon + 1$, where the gradient $(p - q)/N$ is zero.

# %%
margins = np.linspace(-2, 12, pick(141, 701))
curves = {}
for smoothing in (0.0, 0.1):
    crit = nn.CrossEntropyLoss(label_smoothing=smoothing)
    logits = np.zeros((len(margins), K))
    logits[:, 0] = margins
    curves[smoothing] = [crit(logits[i:i + 1], np.array([0])) for i in range(len(margins))]

m_star = np.log(K * (1 - eps) / eps + 1)
m_best = margins[np.argmin(curves[eps])]
crit = nn.CrossEntropyLoss(label_smoothing=eps)
crit(np.array([[m_star] + [0.0] * (K - 1)]), np.array([0]))
grad_at_star = np.abs(crit.backward()).max()
print(f"ε = {eps}, K = {K}: m* = log({K * (1 - eps) / eps + 1:.0f}) = {m_star:.3f}; "
      f"grid minimum at {m_best:.2f}; |dL/dz| at m* = {grad_at_star:.1e}")
check(abs(m_best - m_star) < 0.05 and grad_at_star < 1e-12,
      "with smoothing the loss is smallest at the margin m*, where the gradient vanishes")
check(np.all(np.diff(curves[0.0]) < 0), "without smoothing the loss falls for ever")

fig, ax = plt.subplots(figsize=(6, 3.8))
ax.plot(margins, curves[0.0], label="ε = 0")
ax.plot(margins, curves[eps], label=f"ε = {eps}")
ax.axvline(m_star, color="gray", linestyle="--", label=f"m* = {m_star:.2f}")
ax.set(xlabel="margin m of the true logit over the others", ylabel="loss",
       title=f"cross-entropy, K = {K} classes", ylim=(0, 4))
ax.legend()
ax.grid(alpha=0.3)
show_or_save(fig, "04_label_smoothing.png")

# %% [markdown]
# ## The library version
#
# `numpy_resnet/nn/activation.py`, `pooling.py` (max and average pooling reuse the
# convolution's im2col, one channel at a time), `linear.py` and `loss.py`.
#
# ## Exercises
#
# 1. Max pooling with ties: make a 2x2 window of equal values. Where does the gradient go
#    in our layer, and in PyTorch? Does gradcheck count it as a kink?
# 2. Show that a 2x2 average pool with stride 2 equals a convolution with a fixed kernel.
#    Which kernel, and what is its backward?
# 3. For $\varepsilon = 0.1$ and $K = 1000$ (ImageNet), compute the optimal margin $m^*$.
#    What is the smallest loss a perfect classifier can reach?
# 4. Derive $dL/dz$ for `reduction="sum"` and check it with `gradcheck`.
# 5. Why does the ResNet put global average pooling before the linear layer rather than
#    flattening a 7x7x512 map? Count the parameters of both choices for ResNet-18.
