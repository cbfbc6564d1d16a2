# %% [markdown]
# # Lesson 07 — Gradient flow in plain and residual networks
#
# **Goal:** see, in numbers measured on real CIFAR-10 images, why a gradient reaches the
# first layer of a deep residual network intact while in the plain twin of the same depth
# it is off by orders of magnitude.
#
# ## The math
#
# Write a residual network as $x_{i+1} = x_i + F(x_i)$ (this ignores the ReLU after each
# sum; the "pre-activation" ResNet of He et al., 2016b, removes it and makes what follows
# exact). Unrolled from block $l$ to the last block $L$:
#
# $$x_L = x_l + \sum_{i=l}^{L-1} F(x_i)
#   \qquad\Longrightarrow\qquad
#   \frac{\partial L}{\partial x_l} = \frac{\partial L}{\partial x_L}
#   \Big(1 + \frac{\partial}{\partial x_l}\sum_{i=l}^{L-1} F(x_i)\Big).$$
#
# The **1** delivers $\partial L / \partial x_L$ to every block directly, without passing
# through any layer's weights. In a plain network $x_{i+1} = F(x_i)$ there is no 1, only
# the chain rule's product of Jacobians:
#
# $$\frac{\partial L}{\partial x_l} = \frac{\partial L}{\partial x_L}
#   \prod_{i=l}^{L-1} \frac{\partial F(x_i)}{\partial x_i},$$
#
# and a product of $L - l$ factors grows or shrinks exponentially with $L - l$ unless every
# factor is tuned to 1. Initialisation (lesson 09) and BatchNorm (lesson 03) try to tune
# them; depth makes small mistakes large.
#
# With BatchNorm in train mode, the plain nets below show *exploding* gradients toward
# the input (Yang et al., 2019, explain why BatchNorm does this at initialisation), not the
# vanishing gradients of the textbook story. Either way the layers near the input receive
# updates on a different scale from the layers near the output, and no single learning
# rate suits both.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, QUICK, check, data, pick, print_table, show_or_save

from numpy_resnet import manual_seed, use_engine
from numpy_resnet.diagnostics import gradient_flow
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.models import cifar_resnet

use_engine("reference")  # the check below runs the code in nn/ and blocks.py, not the fast engine's twins
print(f"mode: {MODE}")

# %% [markdown]
# ## Is the measured gradient right?
#
# Everything below trusts the whole-network backward. A small residual CIFAR net in float64
# against finite differences (a sample of entries per tensor) says it can be trusted.

# %%
manual_seed(0)
tiny = cifar_resnet(8, width=4)
x_check = np.random.default_rng(0).standard_normal((4, 3, 8, 8))
report = gradcheck(tiny, x_check, max_checks=pick(3, 10))
print(f"{len(report.tensors)} tensors checked, max relative error {report.max_error:.1e}")
check(report.ok(), "a whole residual network's backward matches finite differences")

# %% [markdown]
# ## One batch, six networks
#
# The CIFAR networks of He et al. at depths 20, 56 and 110 (quick mode: 8, 14 and 20, four
# channels wide), each with its plain twin: the same layers, no skip connections. One
# forward and backward in train mode on the first training images, at initialisation.
# `numpy_resnet.diagnostics.gradient_flow` records, for every conv layer, the norm of the
# weight gradient $\|\partial L / \partial W\|$, and for every block the norm of the
# gradient at its input $\|\partial L / \partial x_l\|$ split into "through $F$" and
# "through the skip".
#
# Six deep networks on a real batch take minutes on the reference engine, so from here the
# lesson runs on the fast engine, `use_engine("fast")`: it computes the same numbers as the
# layers and blocks checked above, up to rounding (`tests/` checks that they agree), many
# times faster.

# %%
use_engine("fast")
depths = pick((8, 14, 20), (20, 56, 110))
width = pick(4, 16)
batch = pick(16, 128)
cifar = data()
x, y = cifar.x_train[:batch], cifar.y_train[:batch]
print(f"{batch} real CIFAR-10 images, labels {np.bincount(y, minlength=10)}")

reports = {}
for depth in depths:
    for residual in (False, True):
        name = f"{'resnet' if residual else 'plain'}{depth}"
        manual_seed(0)
        model = cifar_resnet(depth, residual=residual, width=width)
        reports[name] = gradient_flow(model, x, y, name=name)
        print(f"{name:>10}: loss {reports[name].loss:.3f}")

rows = []
for name, r in reports.items():
    norms = r.conv_grad_norms()
    rows.append([name, len(norms), f"{r.loss:.3f}", f"{norms[0]:.2e}", f"{norms[-1]:.2e}",
                 f"{r.first_last_ratio():.3g}"])
print_table(["model", "convs", "loss", "|dL/dW| first", "|dL/dW| last", "first / last"], rows)

# %% [markdown]
# ## The split at every block
#
# In each residual block, `gradient_flow` checks that $\partial L/\partial x$ equals the sum
# of the two paths (lesson 05), and measures how much of it came through the skip.

# %%
deep = depths[-1]
split_errors = [b.split_error for r in reports.values() for b in r.blocks]
check(max(split_errors) < 1e-5, f"dL/dx = through F + through skip in every block "
      f"(largest mismatch {max(split_errors):.1e})")
skip_share = [b.shortcut_norm / (b.shortcut_norm + b.residual_norm)
              for b in reports[f"resnet{deep}"].blocks]
print(f"resnet{deep}: the skip carries {min(skip_share):.0%} to {max(skip_share):.0%} of the "
      f"gradient norm arriving at a block's input (median {np.median(skip_share):.0%})")

# %% [markdown]
# ## What the numbers say
#
# The ratio between the first and the last conv's gradient grows with depth in the plain
# nets and stays small in the residual ones.

# %%
plain_ratio = {d: reports[f"plain{d}"].first_last_ratio() for d in depths}
res_ratio = {d: reports[f"resnet{d}"].first_last_ratio() for d in depths}
check(plain_ratio[deep] > 3 * res_ratio[deep],
      f"at depth {deep}, plain first/last = {plain_ratio[deep]:.3g} vs residual {res_ratio[deep]:.3g}")
if not QUICK:
    check(plain_ratio[20] < plain_ratio[56] < plain_ratio[110],
          "the plain nets' ratio grows with depth: "
          + ", ".join(f"{d}: {plain_ratio[d]:.3g}" for d in depths))
    check(max(res_ratio.values()) < 100,
          "the residual nets' ratio stays below 100 at every depth: "
          + ", ".join(f"{d}: {res_ratio[d]:.3g}" for d in depths))

# %% [markdown]
# ## Figure: gradient norm against depth (log scale)

# %%
fig, (ax_w, ax_x) = plt.subplots(1, 2, figsize=(12, 4.2))
colors = dict(zip(depths, ["tab:green", "tab:orange", "tab:red"], strict=True))
for name, r in reports.items():
    depth = int(name.removeprefix("plain").removeprefix("resnet"))
    style = "-" if name.startswith("resnet") else "--"
    norms = r.conv_grad_norms()
    ax_w.semilogy(np.arange(1, len(norms) + 1) / len(norms), norms, style,
                  color=colors[depth], label=name)
    block_norms = [b.grad_input_norm for b in r.blocks]
    ax_x.semilogy(np.arange(1, len(block_norms) + 1) / len(block_norms), block_norms, style,
                  color=colors[depth], label=name)
ax_w.set(xlabel="conv layer (fraction of depth, input → output)", ylabel="|dL/dW|",
         title="weight gradient of every conv at initialisation")
ax_x.set(xlabel="block (fraction of depth, input → output)", ylabel="|dL/dx_l|",
         title="gradient arriving at every block's input")
for ax in (ax_w, ax_x):
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
fig.suptitle("plain (dashed) vs residual (solid), one batch of CIFAR-10")
fig.tight_layout()
show_or_save(fig, "07_gradient_flow.png")

# %% [markdown]
# Read the figure from right to left, the way the gradient travels. The residual curves
# lie almost on top of each other: a deeper residual net adds blocks, but its gradients
# change no faster from output to input. The plain curves climb steadily toward the
# input, and each extra block multiplies in one more factor, so the deeper the net, the
# higher they end. Lesson 08 trains these twins and shows what that does to learning.
#
# ## The library version
#
# `numpy_resnet/diagnostics.py`: `gradient_flow(model, x, y)` and the `GradientRecorder`
# context manager it uses; `numpy-resnet gradflow` runs this lesson's measurement from the
# command line.
#
# ## Exercises
#
# 1. Put the BatchNorms in eval mode (`model.eval()` before forward, so they are the
#    identity at initialisation) and measure again. Do the plain nets' gradients now
#    explode or vanish?
# 2. Repeat with `zero_init_residual=True`. What is the skip's share of the gradient now,
#    and why?
# 3. Change the seed. How much do the ratios move? Is the conclusion robust?
# 4. After one epoch of training (lesson 08's loop), measure again. Do the plain net's
#    gradients even out?
# 5. Show that for a pre-activation block, $y = x + F(x)$ with no ReLU after the sum, the
#    identity term is exactly $\partial L/\partial x_L$ for every $l$. Which of our blocks'
#    lines would change?
