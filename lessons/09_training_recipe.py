# %% [markdown]
# # Lesson 09 — The training recipe, one ingredient at a time
#
# **Goal:** understand what each part of the standard ResNet recipe does (Kaiming
# initialisation, learning-rate warmup and cosine decay, weight decay, label smoothing,
# zero-initialised last BatchNorm) by measuring it at initialisation where that is exact,
# and by short ablations where it is not, read against the noise between two seeds.
#
# ## The math
#
# **Kaiming initialisation** (He et al., 2015). A conv layer computes sums of
# $n = C_{in} k^2$ products $w \cdot x$. With independent zero-mean weights of variance
# $\sigma_w^2$, and a ReLU before it that zeroes half its inputs (so $E[x^2] =
# \tfrac12 \text{Var}[\text{pre-activation}]$), the variance of the pre-activations
# changes by a factor $\tfrac12 n \sigma_w^2$ per layer. It stays constant only for
#
# $$\sigma_w = \sqrt{2 / n}.$$
#
# The pre-2015 habit, $\sigma_w = 0.01$ for every layer, gives a factor
# $\tfrac12 \cdot 144 \cdot 10^{-4} = 0.0072$ per layer for 16-channel 3x3 convs: the
# signal vanishes geometrically. (torchvision uses $n = C_{out} k^2$, "fan_out", which
# keeps the *backward* variance constant; in a stage where $C_{in} = C_{out}$ the two agree.)
#
# **Learning rate.** A linear warmup from almost 0 to the peak avoids huge first steps
# while BatchNorm's statistics and the weights are still far from anything sensible; a
# cosine decay to 0, $\eta_t = \tfrac12 \eta_{max} (1 + \cos(\pi t / T))$, anneals at the end.
#
# **Weight decay** adds $\lambda w$ to each gradient, shrinking every weight by a factor
# $(1 - \eta_t \lambda)$ per step. **Label smoothing** (lesson 04) caps how confident the
# logits are asked to be. **Zero-init residual**: start each block's last BatchNorm with
# $\gamma = 0$, so every block starts as the identity (lesson 05) and the network starts
# effectively shallow.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, QUICK, check, data, pick, print_table, show_or_save, smooth, train

from numpy_resnet import manual_seed, use_engine
from numpy_resnet.data import normalize
from numpy_resnet.diagnostics import GradientRecorder
from numpy_resnet.models import cifar_resnet
from numpy_resnet.nn import Conv2d, CrossEntropyLoss, Parameter, init
from numpy_resnet.optim import SGD, LinearLR, WarmupCosine

use_engine("reference")  # the measurements below run the code in nn/ you are reading, not the fast twins
print(f"mode: {MODE}")
cifar = data(train_size=pick(64, 500), test_size=pick(64, 300))
batch_size = 32
x_probe = cifar.x_train[:pick(16, 64)]


def naive_init_(model, std=0.01):
    """Every conv weight ~ N(0, std²), the pre-Kaiming habit."""
    for module in model.modules():
        if isinstance(module, Conv2d):
            init.normal_(module.weight, 0.0, std)
    return model


def output_stds(model, x, keep):
    """One forward of images x; the output std of every layer record r with keep(r)."""
    with GradientRecorder(model) as recorder:
        model(normalize(x))
    return np.array([r.std for r in recorder.report().layers if keep(r)])


def is_relu(record):
    return record.kind == "ReLU"


def is_block_output(record):
    return record.name.endswith("relu2")          # a BasicBlock's last ReLU


# %% [markdown]
# ## Initialisation, measured exactly
#
# To see the initialisation alone, switch BatchNorm off: in eval mode at initialisation
# (running mean 0, running variance 1) it is the identity, so a plain network is just
# conv-ReLU layers. We pass real images through a plain 56-layer net (quick: 20) and
# record the standard deviation after every ReLU.

# %%
depth_init = pick(20, 56)
stds = {}
for name, make in [("Kaiming (fan_out)", lambda: cifar_resnet(depth_init, residual=False)),
                   ("N(0, 0.01²)", lambda: naive_init_(cifar_resnet(depth_init, residual=False)))]:
    manual_seed(0)
    model = make().eval()
    stds[name] = output_stds(model, x_probe, is_relu)
mid = len(stds["Kaiming (fan_out)"]) // 2
per_layer = {name: (s[mid] / s[0]) ** (1 / mid) for name, s in stds.items()}
theory = np.sqrt(0.5 * 144 * 0.01 ** 2)
print_table(["init, BN off", "first ReLU std", "middle", "last", "std factor per layer"],
            [[name, f"{s[0]:.2e}", f"{s[mid]:.2e}", f"{s[-1]:.2e}", f"{per_layer[name]:.3f}"]
             for name, s in stds.items()])
print(f"(per-layer factor: geometric mean over the first {mid} layers; theory for σ = 0.01 "
      f"and 16 channels: √(½·144·10⁻⁴) = {theory:.3f})")
check(per_layer["Kaiming (fan_out)"] > 0.85,
      f"Kaiming changes the std by only {per_layer['Kaiming (fan_out)'] - 1:+.0%} per layer")
check(per_layer["N(0, 0.01²)"] < 0.15,
      f"σ = 0.01 loses {1 - per_layer['N(0, 0.01²)']:.0%} per layer: the signal vanishes geometrically")

# %% [markdown]
# Kaiming's factor is not exactly 1 either. The variance argument assumes every output
# sums over $n$ inputs, but at the image border zero padding supplies some of them (at
# 8x8, in the last stage, a 3x3 window averages only 84% real inputs); where a stage
# doubles the channels, fan_out initialisation halves the forward variance; and with only
# 16 to 64 channels the per-layer factor is itself random, and random factors multiply to
# a drift. Over 56 layers a few percent per layer adds up, which is one more reason
# BatchNorm is there. But it is a few percent, not the 90% of $\sigma = 0.01$, whose
# signal underflows float32 to exactly 0 before the last layer of the full-mode net.

# %%
real_inputs = ((8 * 3 - 2) / (8 * 3)) ** 2      # per axis: 3 taps at 8 positions, 2 in the padding
print(f"share of real (unpadded) inputs in a 3x3 window, averaged over an 8x8 map: {real_inputs:.2f}")

# %% [markdown]
# With BatchNorm in train mode each layer is renormalised, so the forward pass no longer
# cares about the weights' scale at all; what the scale still changes is the size of the
# updates relative to the weights (the gradient of a scale-invariant layer is $\propto
# 1 / \|w\|$). The training runs below include a naive-init run to see how much that matters
# with BatchNorm present.
#
# ## Zero-init residual, measured exactly
#
# In a residual net every block adds its branch to the running sum, so in train mode the
# activations grow block after block. With $\gamma = 0$ in each block's last BatchNorm the
# branches start silent and the scale stays where the stem put it.

# %%
depth_zero = pick(14, 56)
block_stds = {}
for zero_init in (False, True):
    manual_seed(0)
    model = cifar_resnet(depth_zero, zero_init_residual=zero_init)
    block_stds[zero_init] = output_stds(model, x_probe, is_block_output)   # train mode
growth = {z: s[-1] / s[0] for z, s in block_stds.items()}
print(f"resnet{depth_zero}, train mode, std of the block outputs, last / first: "
      f"standard init {growth[False]:.2f}, zero-init residual {growth[True]:.2f}")
check(growth[False] > 2 * growth[True],
      "with zero-init the activations do not grow along the residual stream")

# %% [markdown]
# ## The schedule, computed
#
# The library's `WarmupCosine` starts at $10^{-3}$ of the peak, reaches the peak after the
# warmup steps and follows the cosine to 0.

# %%
steps_per_epoch = int(np.ceil(len(cifar.x_train) / batch_size))
epochs = pick(1, 3)
total_steps = epochs * steps_per_epoch


def lr_curve(make_scheduler):
    optimizer = SGD([Parameter(np.zeros(1))], lr=0.05)
    scheduler = make_scheduler(optimizer, total_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.step()
    return np.array(lrs)


def warmup_cosine(optimizer, total):
    return WarmupCosine(optimizer, warmup_steps=steps_per_epoch if total > steps_per_epoch else 0,
                        total_steps=total)


def constant(optimizer, total):
    return LinearLR(optimizer, start_factor=1.0, end_factor=1.0, total_iters=total)


lr_wc, lr_const = lr_curve(warmup_cosine), lr_curve(constant)
if not QUICK:
    check(np.isclose(lr_wc[0], 5e-5) and np.isclose(lr_wc.max(), 0.05) and lr_wc[-1] < 0.001,
          f"warmup-cosine: {lr_wc[0]:.0e} at step 0, peak {lr_wc.max():.2f} "
          f"at step {lr_wc.argmax()}, {lr_wc[-1]:.1e} at the last step")
shrink = np.prod(1 - lr_wc * 5e-4)
print(f"weight decay 5e-4 over these {total_steps} steps shrinks a weight (without gradient) "
      f"by a factor {shrink:.4f}")

# %% [markdown]
# That last number is a warning for the ablation below: in a run this short, weight decay
# has barely begun to act, and its effect is expected to be within the noise.
#
# ## Label smoothing's floor, computed
#
# With smoothing $\varepsilon$ the best possible loss is not 0 but the entropy of the
# target $q$: the model can at best predict $p = q$.

# %%
K, eps = 10, 0.1
q = np.full(K, eps / K)
q[0] += 1 - eps
floor = float(-(q * np.log(q)).sum())
at_q = CrossEntropyLoss(label_smoothing=eps)(np.log(q)[None, :], np.array([0]))
check(np.isclose(at_q, floor), f"with ε = {eps} the smallest possible training loss is H(q) = {floor:.3f}")

# %% [markdown]
# ## Short ablations
#
# A ResNet-20 (quick: ResNet-8, four channels) trained with the full recipe (batch 32, peak
# lr 0.05, one epoch of warmup, cosine, weight decay 5e-4, crops and flips), then with one
# ingredient changed at a time, plus the full recipe again with another seed (another
# initialisation and data order) to show how much two identical recipes differ. An
# ingredient's effect is believable only if it is clearly larger than that difference.
#
# Seven training runs are where speed matters, so they use the fast engine,
# `use_engine("fast")`: it computes the same numbers as the layers in `nn/` measured above,
# up to rounding (`tests/` checks that they agree), a few times faster.

# %%
use_engine("fast")
depth, width = pick((8, 4), (20, 16))
runs = {
    "recipe": {},
    "recipe, seed 1": {"seed": 1},
    "N(0, 0.01²) init": {"naive_init": True},
    "constant lr 0.05": {"schedule": constant},
    "no weight decay": {"weight_decay": 0.0},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "zero-init residual": {"zero_init": True},
}
histories = {}
for name, change in runs.items():
    seed = change.get("seed", 0)
    manual_seed(seed)
    model = cifar_resnet(depth, width=width, zero_init_residual=change.get("zero_init", False))
    if change.get("naive_init"):
        naive_init_(model)
    histories[name] = train(model, cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test,
                            epochs=epochs, batch_size=batch_size, lr=0.05,
                            weight_decay=change.get("weight_decay", 5e-4),
                            label_smoothing=change.get("label_smoothing", 0.0),
                            schedule=change.get("schedule", warmup_cosine), seed=seed, label=name)

# %%
final = {name: h["epochs"][-1] for name, h in histories.items()}
check(all(not r["diverged"] for r in final.values()), "every run finished")
noise = abs(final["recipe"]["test_acc"] - final["recipe, seed 1"]["test_acc"])
print_table(["run", "train loss", "train acc", "test acc", "test acc - recipe"],
            [[name, f"{r['train_loss']:.3f}", f"{r['train_acc']:.3f}", f"{r['test_acc']:.3f}",
              f"{r['test_acc'] - final['recipe']['test_acc']:+.3f}"] for name, r in final.items()])
p_test = final["recipe"]["test_acc"]
standard_error = np.sqrt(p_test * (1 - p_test) / len(cifar.x_test))
print(f"\ntwo yardsticks for noise: the same recipe with another seed differs by {noise:.3f}; "
      f"{len(cifar.x_test)} test images alone give a standard error of "
      f"√(p(1-p)/n) = {standard_error:.3f} at p = {p_test:.2f}.")
print("(the label-smoothing run's training loss includes its floor and is not comparable)")

# %% [markdown]
# ## Figure

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 8))
ax = axes[0, 0]
for name, s in stds.items():
    ax.semilogy(np.arange(1, len(s) + 1), s, label=name)
ax.set(xlabel="ReLU layer", ylabel="output std", title=f"plain-{depth_init} at init, BatchNorm off")
ax = axes[0, 1]
for z, s in block_stds.items():
    ax.plot(np.arange(1, len(s) + 1), s, marker=".", label="zero-init residual" if z else "standard")
ax.set(xlabel="block", ylabel="block output std", title=f"resnet{depth_zero} at init, train mode")
ax = axes[1, 0]
ax.plot(lr_wc, label="warmup + cosine")
ax.plot(lr_const, label="constant")
ax.set(xlabel="step", ylabel="learning rate", title="schedules")
ax = axes[1, 1]
window = pick(2, 8)
for name, h in histories.items():
    style = ":" if name == "recipe, seed 1" else "-"
    ax.plot(smooth(h["steps"], window), style, label=name)
ax.set(xlabel="step", ylabel=f"training loss (moving average of {window})",
       title=f"ablations, resnet{depth}")
for ax in axes.ravel():
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
fig.tight_layout()
show_or_save(fig, "09_training_recipe.png")

# %% [markdown]
# What to take away: the measurements at initialisation are exact and large (a geometric
# collapse without Kaiming when nothing renormalises; a residual stream that grows without
# zero-init), while the short ablations are noisy. Read each row of the table against the
# two noise yardsticks printed under it; a difference that does not clearly beat both is
# not evidence, and one pair of seeds is itself a rough estimate (exercise 2 asks for
# more). Recipes are tuned on long runs, where small per-step effects accumulate: weight
# decay, whose total effect here was computed above, is the clearest case.
#
# ## The library version
#
# `numpy_resnet/nn/init.py` (`kaiming_normal_`, ...), `numpy_resnet/optim/`
# (`SGD(weight_decay=...)`, `WarmupCosine`, `param_groups_no_decay`), `CrossEntropyLoss(
# label_smoothing=...)`, and `get_model(..., zero_init_residual=True)`. `TrainConfig` in
# `numpy_resnet/train.py` holds the recipe's defaults.
#
# ## Exercises
#
# 1. Try `init.kaiming_normal_(w, mode="fan_in")` and Xavier's $\sigma_w = \sqrt{1/n}$ in
#    the BatchNorm-off measurement. What factor per layer does each give?
# 2. Run the ablation with three seeds per row and report mean and spread. Which
#    ingredients now stand out?
# 3. `param_groups_no_decay` exempts biases and BatchNorm parameters from weight decay.
#    Why would decaying γ fight the normalisation?
# 4. Remove the warmup but keep the cosine. Does the first epoch change? Try a peak
#    learning rate of 0.4.
# 5. With zero-init residual, what is the gradient of each block's conv1 weight at the very
#    first step? Which parameters learn first?
