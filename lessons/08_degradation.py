# %% [markdown]
# # Lesson 08 — The degradation problem
#
# **Goal:** train plain networks and their residual twins side by side on real CIFAR-10
# images and watch the deeper plain network train *worse* than the shallower one (higher
# training loss, so not overfitting), while the residual twin does not.
#
# ## The argument
#
# He et al. (2016) start from a construction. Take a trained 20-layer network and add 36
# layers that compute the identity: the 56-layer result computes exactly the same function.
# So the deeper network can always do at least as well *on the training set*, and if it
# does worse, the fault is in the optimisation, not in what it can represent. A plain
# stack of conv-BN-ReLU layers has to learn the identity with its weights, which is hard
# (lesson 07: its gradients are off by orders of magnitude from layer to layer). A residual
# block only has to learn $F(x) = 0$, and its skip connection carries the gradient whatever
# $F$ does.
#
# ## The experiment, and the choices made to keep it short
#
# Degradation is a statement about *training* error, so we measure the optimiser: how well
# does each network fit a fixed, small training set? Full mode trains the CIFAR networks of
# depth 20 and 56 (the pair in the paper's Figure 1: 16 channels in the first stage,
# option-A shortcuts), plain and residual, on 256 real training images (class-balanced),
# without augmentation, for 10 epochs of 8 steps: SGD with momentum 0.9, batch 32, a one-epoch
# linear warmup to lr 0.05, cosine decay, weight decay 5e-4. The paper trains for 64,000
# steps on 50,000 images; 80 steps take minutes here and already separate the nets. Read
# the numbers as a snapshot of early training, not as the paper's final errors; the
# ordering is the result. Test accuracy on 300 held-out images is reported at the end,
# but 256 training images are too few for it to mean much.
#
# One more choice: the residual nets start with each block's last BatchNorm at $\gamma = 0$
# (`zero_init_residual`, lesson 09), so each block starts as the identity and the 56-layer
# residual net starts as exactly the construction above, a shallow net plus identity
# layers. With the default $\gamma = 1$ the residual stream grows block after block, the
# deep residual net starts with a loss well above $\log 10$ (lesson 07 prints it), and in
# a run this short its first epochs go to undoing that (exercise 1); over the paper's
# 64,000 steps it does not matter. The plain nets cannot take this option: a plain block
# with $\gamma = 0$ outputs zeros. Quick mode trains depth 8 and 14, four channels wide, on
# 64 images: it only checks that the code runs.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, QUICK, check, data, pick, print_table, show_or_save, smooth, train

from numpy_resnet import manual_seed, use_engine
from numpy_resnet.models import cifar_resnet

use_engine("reference")  # as in every lesson, the code in nn/ you read; the training below switches to fast
print(f"mode: {MODE}")
depths = pick((8, 14), (20, 56))
width = pick(4, 16)
train_size, test_size = pick((64, 64), (256, 300))
epochs, batch_size, lr = pick((2, 32, 0.05), (10, 32, 0.05))
cifar = data(train_size=train_size, test_size=test_size)
print(f"{len(cifar.x_train)} training and {len(cifar.x_test)} test images; "
      f"{epochs} epochs of {int(np.ceil(train_size / batch_size))} steps, batch {batch_size}")

# %% [markdown]
# ## The training loop
#
# `train` in `lessons/_common.py` is the loop of `numpy_resnet/train.py`, written out so
# later lessons can change its parts:
#
# ```python
# for xb, yb in loader:                      # shuffled, augmented, normalised mini-batches
#     optimizer.zero_grad()
#     logits = model(xb)                     # forward: every layer keeps its cache
#     loss = criterion(logits, yb)           # softmax cross-entropy (lesson 04)
#     model.backward(criterion.backward())   # backward: dL/dθ lands in every .grad
#     optimizer.step()                       # θ ← θ - lr · (momentum-smoothed) grad
#     scheduler.step()                       # warmup, then cosine
# ```
#
# Every model starts from the same seed; the twins have the same layers, and the residual
# ones differ only by the additions (option A adds no parameters) and the zero $\gamma$.
#
# Training four networks is where speed matters, so the runs use the fast engine,
# `use_engine("fast")`: it computes the same numbers as the layers in `nn/` that lessons
# 01-05 checked, up to rounding (`tests/` checks that they agree), a few times faster.

# %%
use_engine("fast")
histories, params = {}, {}
for depth in depths:
    for residual in (False, True):
        name = f"{'resnet' if residual else 'plain'}{depth}"
        manual_seed(0)
        model = cifar_resnet(depth, residual=residual, width=width, zero_init_residual=residual)
        params[name] = sum(p.data.size for p in model.parameters())
        histories[name] = train(model, cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test,
                                epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=1,
                                augment=False, test_every=epochs, label=name)

# %% [markdown]
# ## Results

# %%
final = {name: h["epochs"][-1] for name, h in histories.items()}
print_table(["model", "params", "train loss", "train acc", "test acc", "s / epoch"],
            [[name, f"{params[name]:,}", f"{r['train_loss']:.3f}", f"{r['train_acc']:.3f}",
              f"{r['test_acc']:.3f}",
              f"{np.mean([e['seconds'] for e in histories[name]['epochs']]):.0f}"]
             for name, r in final.items()])

shallow, deep = depths
check(all(np.isfinite(r["train_loss"]) for r in final.values()), "all four networks trained")
if not QUICK:
    check(final[f"plain{deep}"]["train_loss"] > final[f"plain{shallow}"]["train_loss"],
          f"degradation: plain{deep} ends with a higher training loss than plain{shallow} "
          f"({final[f'plain{deep}']['train_loss']:.3f} vs {final[f'plain{shallow}']['train_loss']:.3f})")
    check(final[f"resnet{deep}"]["train_loss"] < final[f"plain{deep}"]["train_loss"],
          f"the residual twin trains better at depth {deep}: "
          f"{final[f'resnet{deep}']['train_loss']:.3f} vs {final[f'plain{deep}']['train_loss']:.3f}")
    check(final[f"plain{deep}"]["train_loss"] > 0.9 * np.log(10),
          f"plain{deep} stays within 10% of log 10 = {np.log(10):.3f}, the loss of a random guess")
    cost_plain = final[f"plain{deep}"]["train_loss"] - final[f"plain{shallow}"]["train_loss"]
    cost_res = final[f"resnet{deep}"]["train_loss"] - final[f"resnet{shallow}"]["train_loss"]
    check(cost_res < cost_plain,
          f"going from {shallow} to {deep} layers changes the training loss by {cost_plain:+.3f} "
          f"for the plain nets and by {cost_res:+.3f} for the residual nets")

# %% [markdown]
# ## Figure: training loss and training accuracy

# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
colors = dict(zip(depths, ["tab:blue", "tab:red"], strict=True))
window = pick(2, 8)
for name, h in histories.items():
    depth = int(name.removeprefix("plain").removeprefix("resnet"))
    style = "-" if name.startswith("resnet") else "--"
    steps = np.arange(1, len(h["steps"]) + 1) / (len(h["steps"]) / epochs)
    ax_loss.plot(steps, smooth(h["steps"], window), style, color=colors[depth], label=name)
    ax_acc.plot([e["epoch"] for e in h["epochs"]], [e["train_acc"] for e in h["epochs"]],
                style, marker="o", color=colors[depth], label=name)
ax_loss.set(xlabel="epoch", ylabel=f"training loss (moving average of {window} steps)",
            title="training loss: plain (dashed) vs residual (solid)")
ax_acc.set(xlabel="epoch", ylabel="training accuracy (during the epoch)",
           title=f"training accuracy ({train_size} images)")
for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
show_or_save(fig, "08_degradation.png")

# %% [markdown]
# He et al.'s Figure 1 in miniature. Of the plain networks the deeper one fits the
# training set worse, the opposite of what its extra capacity promises: within this budget
# plain-56 barely leaves the loss of a random guess, $\log 10 \approx 2.30$. With skip
# connections the same 56 layers train at least about as well as 20 (the checks above print
# the numbers of this run). The paper's comparison runs along depth, plain with plain and
# residual with residual. Across the two, at 20 layers the plain net may well fit fastest
# in a run this short: depth 20 gives it no trouble yet, while the zero-initialised
# residual nets start with their blocks switched off and spend the first epochs growing
# them. For longer runs, see the 30-epoch PyTorch reference on the same
# subset in the data folder's README, or run `numpy-resnet experiment degradation`.
#
# ## The library version
#
# `numpy_resnet/train.py` (`fit`, `train_one_epoch`, `evaluate`), and `numpy-resnet train
# --model plain56` from the command line.
#
# ## Exercises
#
# 1. Train the residual nets with `zero_init_residual=False`. Plot the first epochs of
#    resnet56: where does its loss start, and why (lesson 09)? What does a longer warmup do?
# 2. Double the number of epochs. Does plain56 catch up with plain20, or does the gap stay?
#    Add depth 110: does plain110 learn at all in this budget?
# 3. Use option-B shortcuts (`cifar_resnet(depth, shortcut="B")`). Do the residual nets
#    change? Count the extra parameters.
# 4. Lower the peak learning rate to 0.02. Which networks are hurt, which helped? What does
#    lesson 07 suggest about the learning rate the plain nets' first layers "want"?
# 5. Plot the test accuracy against the training loss for all four networks. Is the plain
#    nets' poor test accuracy explained by their training loss alone?
