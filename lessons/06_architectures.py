# %% [markdown]
# # Lesson 06 — The ResNet family, from blocks to models
#
# **Goal:** assemble ResNet-18 to 152, ResNeXt-50 and ResNet-50-D from the blocks of
# lesson 05, and check the model zoo against the published parameter counts and
# multiply-accumulate (MAC) counts, then see why CIFAR needs a different stem.
#
# ## The architecture table
#
# Table 1 of He et al. (2016), for 224x224 images. Every model is a stem, four stages and a
# classifier; a stage is `_make_layer(block, planes, blocks, stride)`, whose first block may
# halve the image and widen the channels (with a shortcut from lesson 05):
#
# | stage | output | 18 / 34 (BasicBlock) | 50 / 101 / 152 (Bottleneck, expansion 4) |
# |---|---|---|---|
# | conv1 + maxpool | 56x56 | 7x7, 64, stride 2; 3x3 max pool, stride 2 | same |
# | layer1 | 56x56 | [3x3, 64] x 2 / 3 | [1x1, 64; 3x3, 64; 1x1, 256] x 3 / 3 / 3 |
# | layer2 | 28x28 | [3x3, 128] x 2 / 4 | [..., 512] x 4 / 4 / 8 |
# | layer3 | 14x14 | [3x3, 256] x 2 / 6 | [..., 1024] x 6 / 23 / 36 |
# | layer4 | 7x7 | [3x3, 512] x 2 / 3 | [..., 2048] x 3 / 3 / 3 |
# | fc | 1x1 | global average pool, 1000-way linear | same |
#
# The cost of a convolution per image is $C_{out} H_{out} W_{out} \cdot (C_{in}/\text{groups})
# \cdot k^2$ MACs; torchvision's "GFLOPS" column counts exactly this (convolutions and the
# linear layer; BatchNorm, ReLU and the additions are left out).

# %%
import gc

import matplotlib.pyplot as plt
from _common import MODE, QUICK, check, print_table, show_or_save

from numpy_resnet import use_engine
from numpy_resnet.models import get_model
from numpy_resnet.summary import summary

use_engine("reference")  # the models below run models.py, blocks.py and nn/, not the fast engine's twins
print(f"mode: {MODE}")


def n_params(model):
    return sum(p.data.size for p in model.parameters())


# %% [markdown]
# ## ResNet-18, stage by stage
#
# `summary` runs one image through the model and records every layer's output shape,
# parameters and MACs. Grouped by stage, it shows the design rule of the table: each stage
# halves $H$ and $W$ and doubles the channels, so every stage costs about the same, while
# the parameters pile up in the last, widest stages.

# %%
resnet18 = get_model("resnet18")
table = summary(resnet18, (3, 224, 224))
stages = {}
for row in table.rows:
    stage = row.name.split(".")[0]
    stage = "stem" if stage in ("conv1", "bn1", "relu", "maxpool") else stage
    stage = "head" if stage in ("avgpool", "flatten", "fc") else stage
    entry = stages.setdefault(stage, {"params": 0, "macs": 0, "shape": None})
    entry["params"] += row.params
    entry["macs"] += row.macs
    entry["shape"] = row.output_shape
print_table(["stage", "output (batch 1)", "params", "GMACs"],
            [[name, str(tuple(e["shape"])), f"{e['params']:,}", f"{e['macs'] / 1e9:.3f}"]
             for name, e in stages.items()])
print(f"total: {table.total_params:,} parameters, {table.total_macs / 1e9:.3f} GMACs")
check(table.total_params == 11_689_512, "ResNet-18 has 11,689,512 parameters, as torchvision's")
check(round(table.total_macs / 1e9, 3) == 1.814, "ResNet-18 costs 1.814 GMACs at 224x224")
del resnet18
gc.collect()

# %% [markdown]
# ## The whole zoo against the published numbers
#
# Parameter counts are torchvision's (timm's for `resnet50d`); GMACs are torchvision's
# published "GFLOPS" for the five ResNets. In quick mode we build only ResNet-50 here (the
# big models take a few hundred MB and a few seconds each); the full run builds them all
# and runs `summary` on each at 224x224.

# %%
published = {                      # name: (parameters, GMACs or None if not quoted here)
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
    "resnext50_32x4d": (25_028_904, None),
    "resnet50d": (25_576_264, None),
}
names = ["resnet18", "resnet50"] if QUICK else list(published)
rows, measured = [], {}
for name in names:
    model = get_model(name)
    params = n_params(model)
    gmacs = None
    if not QUICK or name == "resnet18":
        gmacs = summary(model, (3, 224, 224)).total_macs / 1e9
    measured[name] = (params, gmacs)
    want_params, want_gmacs = published[name]
    rows.append([name, f"{params:,}", f"{want_params:,}",
                 "-" if gmacs is None else f"{gmacs:.3f}",
                 "-" if want_gmacs is None else f"{want_gmacs:.3f}"])
    del model
    gc.collect()
print_table(["model", "params", "published", "GMACs", "published"], rows)
for name, (params, gmacs) in measured.items():
    want_params, want_gmacs = published[name]
    check(params == want_params, f"{name}: {params:,} parameters")
    if gmacs is not None and want_gmacs is not None:
        check(round(gmacs, 3) == want_gmacs, f"{name}: {gmacs:.3f} GMACs")

# %% [markdown]
# Two variants on the ResNet-50 frame, built with the same `ResNet` class:
#
# * **ResNeXt-50 32x4d** (Xie et al., 2017): each bottleneck's 3x3 is a grouped
#   convolution with 32 groups of 4 channels (128 wide in the first stage instead of 64).
#   A grouped convolution costs $1/\text{groups}$ of a full one, so the wider block costs
#   about the same, and the parameter count even drops slightly.
# * **ResNet-50-D** ("Bag of Tricks", He et al., 2019): a deep stem (three 3x3 convs
#   instead of one 7x7) and option-D shortcuts (lesson 05), for a little more compute.

# %%
if not QUICK:
    print_table(["model", "params", "GMACs", "GMACs / ResNet-50's"],
                [[name, f"{measured[name][0]:,}", f"{measured[name][1]:.3f}",
                  f"{measured[name][1] / measured['resnet50'][1]:.3f}"]
                 for name in ("resnet50", "resnext50_32x4d", "resnet50d")])
    check(measured["resnext50_32x4d"][0] < measured["resnet50"][0],
          "ResNeXt-50 has fewer parameters than ResNet-50")

# %% [markdown]
# ## CIFAR versus ImageNet stems
#
# The ImageNet stem divides the image by 4 before the first stage (7x7 stride 2, then max
# pool stride 2), and the stages divide it by 8 more. On a 32x32 CIFAR image that leaves
# 8x8 entering `layer1` and 1x1 at `layer4`: most of the network works on a few pixels.
# The CIFAR stem is one 3x3 convolution with stride 1 and no max pool, so `layer1` sees
# all 32x32 pixels: the same weights in the stages, and over ten times the compute.

# %%
shapes, macs = {}, {}
for stem in ("imagenet", "cifar"):
    model = get_model("resnet18", num_classes=10, stem=stem, width=16)
    result = summary(model, (3, 32, 32))
    last = {}
    for row in result.rows:
        last[row.name.split(".")[0]] = tuple(row.output_shape[1:])
    shapes[stem] = last
    macs[stem] = result.total_macs
print_table(["after", "imagenet stem", "cifar stem"],
            [[layer, str(shapes["imagenet"][layer]), str(shapes["cifar"][layer])]
             for layer in ("maxpool", "layer1", "layer2", "layer3", "layer4")])
ratio = macs["cifar"] / macs["imagenet"]
print(f"MACs per 32x32 image, width 16: imagenet stem {macs['imagenet'] / 1e6:.1f} M, "
      f"cifar stem {macs['cifar'] / 1e6:.1f} M ({ratio:.1f}x)")
check(ratio > 10, f"the CIFAR stem costs {ratio:.1f} times the ImageNet stem's MACs on 32x32")
check(shapes["imagenet"]["layer4"][1:] == (1, 1) and shapes["cifar"]["layer4"][1:] == (4, 4),
      "on 32x32 inputs the ImageNet stem leaves 1x1 at layer4, the CIFAR stem 4x4")

# %% [markdown]
# He et al.'s own CIFAR networks (section 4.2) go further: three stages of $n$ BasicBlocks
# with 16, 32 and 64 channels, depth $6n + 2$, option-A shortcuts. Their parameter counts
# are those of the paper's Table 6.

# %%
paper = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}
rows = []
for depth, millions in paper.items():
    count = n_params(get_model(f"resnet{depth}"))
    rows.append([f"resnet{depth}", f"{count:,}", f"{millions}M"])
    digits = 1 if millions >= 1 else 2
    check(round(count / 1e6, digits) == millions, f"resnet{depth}: {count / 1e6:.3f}M ≈ {millions}M")
print_table(["CIFAR model", "params", "paper"], rows)

# %% [markdown]
# ## Figure: where the parameters and the compute of ResNet-18 go

# %%
names_stage = list(stages)
fig, axes = plt.subplots(1, 2 if QUICK else 3, figsize=(11 if QUICK else 15, 3.5))
axes[0].bar(names_stage, [stages[s]["params"] / 1e6 for s in names_stage], color="tab:blue")
axes[0].set(ylabel="parameters (M)", title="ResNet-18: parameters per stage")
axes[1].bar(names_stage, [stages[s]["macs"] / 1e9 for s in names_stage], color="tab:orange")
axes[1].set(ylabel="GMACs at 224x224", title="ResNet-18: compute per stage")
if not QUICK:
    for name, (params, gmacs) in measured.items():
        axes[2].scatter(gmacs, params / 1e6)
        axes[2].annotate(name, (gmacs, params / 1e6), fontsize=8, xytext=(3, 3),
                         textcoords="offset points")
    axes[2].set(xlabel="GMACs at 224x224", ylabel="parameters (M)", title="the model zoo")
for ax in axes:
    ax.grid(alpha=0.3)
fig.tight_layout()
show_or_save(fig, "06_architectures.png")

# %% [markdown]
# ## The library version
#
# `numpy_resnet/models.py`: `ResNet`, `_make_layer` and the constructors `resnet18` ...
# `resnet152`, `resnext50_32x4d`, `resnet50d`, `cifar_resnet`, and `get_model(name)`.
# Their `state_dict` keys are torchvision's (`layer2.0.downsample.0.weight`), so
# `numpy_resnet/convert.py` moves weights to and from PyTorch.
#
# ## Exercises
#
# 1. Compute ResNet-34's parameter count by hand, stage by stage (remember the
#    projection shortcuts and every BatchNorm's $2C$), and compare with the table.
# 2. Where do ResNet-50's 4.089 GMACs go? Group `summary`'s rows by stage as above.
# 3. Build `get_model("resnet50", groups=64, width_per_group=4)` and count its parameters
#    and MACs. Does doubling the cardinality keep ResNeXt-50's budget? Why not?
# 4. `summary(model, (3, 64, 64))` for ResNet-18: how do the MACs scale with the image
#    side? Why is it not exactly quadratic? (Look at the fc layer.)
# 5. Build `get_model("resnet18", num_classes=10, stem="cifar", width=16)` (the default
#    training model of this project). How many parameters does it have, and what fraction
#    of ResNet-18's?
