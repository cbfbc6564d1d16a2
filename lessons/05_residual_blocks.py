# %% [markdown]
# # Lesson 05 — Residual blocks
#
# **Goal:** build the two residual blocks of He et al. (2016), BasicBlock and Bottleneck,
# follow the gradient through the skip connection where it splits and adds, count their
# parameters by hand, and compare the shortcut options A, B and ResNet-D.
#
# ## The math
#
# A residual block adds its input to what its layers compute:
#
# $$y = \text{relu}\big(F(x) + x\big), \qquad
#   F(x) = \text{bn}_2(\text{conv}_2(\text{relu}(\text{bn}_1(\text{conv}_1(x)))))
#   \quad \text{(BasicBlock)}.$$
#
# $x$ feeds two paths, so its gradient is the sum of what comes back along each. With
# $d = \partial L / \partial(F(x) + x) = dy \cdot [F(x) + x > 0]$:
#
# $$\frac{\partial L}{\partial x} =
#   \underbrace{\Big(\frac{\partial F}{\partial x}\Big)^T d}_{\text{through } F}
#   \;+\; \underbrace{d}_{\text{through the skip}}.$$
#
# The second term carries $d$ to $x$ unchanged, however small or badly conditioned $F$'s
# Jacobian is. Lesson 07 follows that term through a hundred layers.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, check, pick, print_table, rng, show_or_save

from numpy_resnet import use_engine
from numpy_resnet.blocks import BasicBlock, Bottleneck
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.nn import Conv2d
from numpy_resnet.shortcuts import make_shortcut
from numpy_resnet.summary import summary

use_engine("reference")  # the checks below run blocks.py and nn/, the code you read, not the fast twins
print(f"mode: {MODE}")
g = rng(0)

# %% [markdown]
# ## Forward and backward by hand, with the block's own layers
#
# The block's layers are attributes (`conv1`, `bn1`, `relu1`, ...), named as in
# torchvision. We run them one by one, forward and then backward, adding the skip
# ourselves, and compare with `BasicBlock.backward`.

# %%
C, H = pick((4, 6), (16, 16))
block = BasicBlock(C, C).to(np.float64)
x = np.maximum(g.standard_normal((4, C, H, H)), 0)     # a block's input comes out of a ReLU
dy = g.standard_normal(x.shape)

# forward: F(x), then the sum, then the last ReLU
f = block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x)))))
y = block.relu2(f + x)

# backward: split at the sum, go back through F, add the skip
d = block.relu2.backward(dy)                                     # d = dy · [F(x) + x > 0]
through_f = block.conv1.backward(block.bn1.backward(
    block.relu1.backward(block.conv2.backward(block.bn2.backward(d)))))
through_skip = d
dx_by_hand = through_f + through_skip
print(f"|through F| = {np.linalg.norm(through_f):.3f}   |through skip| = "
      f"{np.linalg.norm(through_skip):.3f}   |dx| = {np.linalg.norm(dx_by_hand):.3f}")

block.zero_grad()
check(np.allclose(block(x), y), "the block's forward is relu(F(x) + x)")
check(np.allclose(block.backward(dy), dx_by_hand), "the block's backward is F'ᵀd + d")

# %% [markdown]
# ## A block that starts as the identity
#
# Set the last BatchNorm's scale $\gamma_2 = 0$ ("zero-init residual", lesson 09). Then
# $F(x) = \beta_2 = 0$, the block computes $\text{relu}(x) = x$, and the backward through $F$
# is multiplied by $\gamma_2 = 0$: all of $dx$ comes through the skip. Yet $\gamma_2$ itself
# receives a gradient, so training can switch $F$ on.

# %%
block.bn2.weight.data[:] = 0.0
block.zero_grad()
y0 = block(x)
dx0 = block.backward(dy)
check(np.allclose(y0, x), "with γ₂ = 0 the block is the identity on its (non-negative) input")
check(np.allclose(dx0, dy * (x > 0)), "and its gradient is dy, passed straight through the skip")
check(np.abs(block.bn2.weight.grad).max() > 0, "γ₂ still gets a gradient, so F can grow")

# %% [markdown]
# ## The blocks against finite differences
#
# Including blocks that halve the image and widen the channels, with a projection
# shortcut (option B) in the `downsample` slot.

# %%
cases = [
    ("BasicBlock 4->4", BasicBlock(4, 4), (2, 4, 5, 5)),
    ("BasicBlock 4->8 stride 2, B", BasicBlock(4, 8, 2, make_shortcut("B", 4, 8, 2)), (2, 4, 6, 6)),
    ("Bottleneck 16->16", Bottleneck(16, 4), (2, 16, 4, 4)),
    ("Bottleneck 8->16 stride 2, D", Bottleneck(8, 4, 2, make_shortcut("D", 8, 16, 2)), (2, 8, 6, 6)),
]
rows = []
for name, module, shape in cases:
    report = gradcheck(module, g.standard_normal(shape), max_checks=pick(8, 40))
    rows.append([name, len(report.tensors), f"{report.max_error:.1e}", "yes" if report.ok() else "NO"])
print_table(["block", "tensors checked", "max rel error", "ok"], rows)
check(all(row[-1] == "yes" for row in rows), "every block's backward matches finite differences")

# %% [markdown]
# ## Parameters by hand
#
# A $k \times k$ convolution from $C_{in}$ to $C_{out}$ channels has $C_{out} C_{in} k^2$
# weights (no bias: BatchNorm follows). For a block that keeps 256 channels:
#
# * **BasicBlock**, two 3x3 convs: $2 \cdot (256 \cdot 256 \cdot 9) = 1{,}179{,}648$.
# * **Bottleneck** with inner width 64: 1x1 down, 3x3, 1x1 up:
#   $256 \cdot 64 + 64 \cdot 64 \cdot 9 + 64 \cdot 256 = 16{,}384 + 36{,}864 + 16{,}384 = 69{,}632$,
#   seventeen times fewer.
#
# This is why ResNet-50 and deeper use bottlenecks: a 256-wide bottleneck costs about what
# a 64-wide BasicBlock does ($2 \cdot 64 \cdot 64 \cdot 9 = 73{,}728$) while carrying four
# times the channels between blocks. Each BatchNorm adds $2C$ parameters ($\gamma$, $\beta$).


# %%
def conv_weights(module):
    """The number of convolution weights in a module."""
    return sum(m.weight.data.size for _, m in module.named_modules() if isinstance(m, Conv2d))


basic_256, bottleneck_256, basic_64 = BasicBlock(256, 256), Bottleneck(256, 64), BasicBlock(64, 64)
check(conv_weights(basic_256) == 2 * (256 * 256 * 9) == 1_179_648,
      "BasicBlock(256): 2·(256·256·9) = 1,179,648 conv weights")
check(conv_weights(bottleneck_256) == 256 * 64 + 64 * 64 * 9 + 64 * 256 == 69_632,
      "Bottleneck(256, width 64): 256·64 + 64·64·9 + 64·256 = 69,632 conv weights")
check(conv_weights(basic_64) == 73_728, "BasicBlock(64): 2·(64·64·9) = 73,728, close to the bottleneck")

rows = []
for name, module, channels in [("BasicBlock 256", basic_256, 256),
                               ("Bottleneck 256 (width 64)", bottleneck_256, 256),
                               ("BasicBlock 64", basic_64, 64)]:
    total = sum(p.data.size for p in module.parameters())
    macs = summary(module, (channels, 14, 14)).total_macs
    rows.append([name, f"{conv_weights(module):,}", f"{total - conv_weights(module):,}",
                 f"{total:,}", f"{macs / 1e6:.1f}"])
print_table(["block", "conv weights", "BN params", "total", "MMACs at 14x14"], rows)
check(summary(bottleneck_256, (256, 14, 14)).total_macs == 69_632 * 14 * 14,
      "with stride 1, MACs = conv weights · H · W")

# %% [markdown]
# ## Shortcuts when the shape changes
#
# The first block of a stage halves $H, W$ and doubles the channels, so $x$ no longer
# matches $F(x)$. The options:
#
# * **A** (the paper's CIFAR nets): take every other pixel, pad the new channels with zeros.
#   No parameters.
# * **B** (torchvision): a 1x1 convolution with stride 2, then BatchNorm.
# * **D** (ResNet-D, "Bag of Tricks", He et al. 2019): a 2x2 average pool, then the 1x1
#   convolution with stride 1. Option B's strided 1x1 reads only one pixel in four; D reads
#   them all.
#
# The backward shows the difference directly: send a random gradient back through each
# shortcut and count the input pixels that receive any. (Not a gradient of ones: BatchNorm's
# backward maps a constant gradient to zero, lesson 03.)

# %%
C_in, C_out, H = 16, 32, 8
x_s = g.standard_normal((2, C_in, H, H))
rows, patterns = [], {}
for kind in ("A", "B", "D"):
    shortcut = make_shortcut(kind, C_in, C_out, stride=2).to(np.float64)
    y_s = shortcut(x_s)
    dx_s = shortcut.backward(g.standard_normal(y_s.shape))
    reached = np.abs(dx_s).sum(axis=(0, 1)) > 0           # (H, W): pixels that get gradient
    patterns[kind] = reached
    params = sum(p.data.size for p in shortcut.parameters())
    ok = gradcheck(shortcut, g.standard_normal((2, C_in, 4, 4)), max_checks=pick(10, 50)).ok()
    rows.append([kind, str(y_s.shape), params, f"{reached.mean():.0%}", "yes" if ok else "NO"])
print_table(["option", "output", "params", "input pixels reached", "gradcheck"], rows)
check(patterns["A"].mean() == 0.25 and patterns["B"].mean() == 0.25,
      "A and B pass gradient to one input pixel in four")
check(patterns["D"].mean() == 1.0, "D's average pool passes gradient to every input pixel")
check(rows[0][2] == 0 and rows[1][2] == C_in * C_out + 2 * C_out,
      f"A has no parameters; B has {C_in}·{C_out} conv weights + 2·{C_out} BN = {rows[1][2]}")

# %% [markdown]
# ## Figure

# %%
fig, (ax_bar, *ax_maps) = plt.subplots(1, 4, figsize=(12, 3.2),
                                       gridspec_kw={"width_ratios": [2.2, 1, 1, 1]})
layers = {"BasicBlock 256": [589_824, 589_824], "Bottleneck 256": [16_384, 36_864, 16_384],
          "BasicBlock 64": [36_864, 36_864]}
colors = ["tab:blue", "tab:orange", "tab:green"]
for i, sizes in enumerate(layers.values()):
    bottom = 0
    for j, size in enumerate(sizes):
        ax_bar.bar(i, size / 1000, bottom=bottom / 1000, color=colors[j], edgecolor="white",
                   label=f"conv{j + 1}" if i == 1 else None)
        bottom += size
    ax_bar.text(i, bottom / 1000, f"{bottom:,}", ha="center", va="bottom", fontsize=8)
ax_bar.set_xticks(range(len(layers)), list(layers), fontsize=8)
ax_bar.set_ylabel("conv weights (thousands)")
ax_bar.set_title("weights per block, by layer")
ax_bar.legend(fontsize=8)
for ax, (kind, reached) in zip(ax_maps, patterns.items(), strict=True):
    ax.imshow(reached, cmap="Greys", vmin=0, vmax=1)
    ax.set_title(f"option {kind}: {reached.mean():.0%} of pixels\nget gradient", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
show_or_save(fig, "05_blocks_and_shortcuts.png")
check(sum(layers["BasicBlock 256"]) == conv_weights(basic_256)
      and sum(layers["Bottleneck 256"]) == conv_weights(bottleneck_256),
      "the bars add up to the counts above")

# %% [markdown]
# ## The library version
#
# `numpy_resnet/blocks.py` (BasicBlock, Bottleneck, and `residual=False` for the plain
# twin used in lessons 07 and 08) and `numpy_resnet/shortcuts.py` (options A, B, D).
#
# ## Exercises
#
# 1. Count the parameters of `BasicBlock(64, 128, stride=2, downsample=B)` by hand,
#    BatchNorm included, and check with code.
# 2. In the zero-γ block, set $\beta_2 = -1$ instead of 0. Is the block still the
#    identity? What does that say about initialising $\beta$?
# 3. The "pre-activation" block (He et al., 2016b) computes $y = x + F(\text{relu}(\text{bn}(x)))$
#    with no ReLU after the sum. Write its backward. Why is the skip term now exactly
#    $dy$, for every block in a row?
# 4. In option A the gradient that reaches the zero-padded channels of the shortcut is
#    dropped. Is anything lost for learning? (Hint: those channels of the block's output
#    also receive $F(x)$, whose weights do get that gradient.)
# 5. Build `Bottleneck(256, 64, stride_in_1x1=True)` with a stride-2 shortcut. Count its
#    MACs with `summary` against the default (stride on the 3x3). Which reads more pixels?
