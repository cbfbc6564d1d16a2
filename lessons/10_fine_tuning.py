# %% [markdown]
# # Lesson 10 — Fine-tuning: reusing what a network learned
#
# **Goal:** pretrain a ResNet on five CIFAR-10 classes, then adapt it to the other five with
# its early stages frozen and a smaller learning rate for the pretrained layers than for
# the new classifier, and compare with training the same network from scratch.
#
# ## The idea
#
# The early stages of a trained network compute generic features (edges, colours,
# textures), the late stages more specific ones, and the last linear layer maps them to
# *these* classes. For a new task with few labelled images:
#
# * replace the classifier (new classes, new random weights);
# * **freeze** the earliest stages: `Parameter.requires_grad = False`, which every
#   optimizer here skips (no gradient step, no momentum, no weight decay). Their
#   BatchNorms are put in eval mode too, so their running statistics stay as pretrained;
# * train the remaining pretrained stages gently, with a smaller learning rate in their own
#   **parameter group**: `SGD([{"params": backbone, "lr": 0.005}, {"params": head}], lr=0.05)`,
#   so the features adapt without being wiped out by the large, noisy gradients that come
#   from a randomly initialised head.
#
# The backward pass is unchanged: gradients are still computed for the frozen parameters
# (our layers do not skip the work), they are just never applied.
#
# The split: pretrain on airplane, automobile, bird, cat, deer; fine-tune on dog, frog,
# horse, ship, truck, with only a small labelled training set.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import MODE, QUICK, check, data, pick, print_table, show_or_save, train

from numpy_resnet import manual_seed, use_engine
from numpy_resnet.models import cifar_resnet
from numpy_resnet.summary import summary

use_engine("reference")  # as in every lesson, the code in nn/ you read; the training below switches to fast
print(f"mode: {MODE}")
cifar = data()
source_classes, target_classes = np.arange(5), np.arange(5, 10)


def subset(x, y, classes, size, seed=0):
    """Up to `size` images of `classes`, labels renumbered 0..len(classes)-1."""
    keep = np.flatnonzero(np.isin(y, classes))
    keep = np.sort(np.random.default_rng(seed).permutation(keep)[:size])
    return x[keep], np.searchsorted(classes, y[keep])


src_train = subset(cifar.x_train, cifar.y_train, source_classes, pick(128, 2000))
src_test = subset(cifar.x_test, cifar.y_test, source_classes, pick(64, 500))
tgt_train = subset(cifar.x_train, cifar.y_train, target_classes, pick(64, 250), seed=1)
tgt_test = subset(cifar.x_test, cifar.y_test, target_classes, pick(64, 1000))
print("source:", [cifar.classes[c] for c in source_classes], f"{len(src_train[0])} train images")
print("target:", [cifar.classes[c] for c in target_classes], f"{len(tgt_train[0])} train, "
      f"{len(tgt_test[0])} test images")
check(len(set(src_train[1])) == 5 and len(set(tgt_train[1])) == 5,
      "both tasks have five classes, labelled 0..4")

depth, width = pick((8, 4), (20, 16))
pretrain_epochs, tune_epochs = pick((1, 2), (3, 8))
pretrain_batch, tune_batch = pick((32, 32), (64, 32))

# %% [markdown]
# ## 1. Pretrain on the source classes
#
# This lesson trains three networks, so from here it runs on the fast engine,
# `use_engine("fast")`: it computes the same numbers as the layers in `nn/` that lessons
# 01-05 checked, up to rounding (`tests/` checks that they agree), a few times faster.
# Freezing, parameter groups and `state_dict` work the same on either engine.

# %%
use_engine("fast")
manual_seed(0)
pretrained = cifar_resnet(depth, width=width, num_classes=5)
pretrain = train(pretrained, *src_train, *src_test, epochs=pretrain_epochs,
                 batch_size=pretrain_batch, lr=0.1, label="pretrain")

# %% [markdown]
# ## 2. Move the weights to a new model with a fresh head
#
# `state_dict` / `load_state_dict` work with PyTorch's key names. We drop the classifier's
# keys and load with `strict=False`, which reports them as missing: the new model keeps its
# freshly initialised `fc`.

# %%
manual_seed(1)
tuned = cifar_resnet(depth, width=width, num_classes=5)
backbone_state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("fc.")}
missing, unexpected = tuned.load_state_dict(backbone_state, strict=False)
print(f"missing: {missing}, unexpected: {unexpected}")
check(missing == ["fc.weight", "fc.bias"] and not unexpected,
      "everything but the classifier comes from the pretrained network")

# %% [markdown]
# ## 3. Freeze the stem and the first stage, group the rest

# %%
frozen = [tuned.conv1, tuned.bn1, tuned.layer1]
for module in frozen:
    for p in module.parameters():
        p.requires_grad = False
head = list(tuned.fc.parameters())
backbone = [p for name, p in tuned.named_parameters() if not name.startswith("fc.")]
groups = [{"params": backbone, "lr": 0.005},         # pretrained: 10x smaller lr (frozen ones skipped)
          {"params": head}]                          # new classifier: the default lr, 0.05
counts = summary(tuned, (3, 32, 32))
print(f"trainable parameters: {counts.trainable_params:,} of {counts.total_params:,}")
before = {name: p.data.copy() for name, p in tuned.named_parameters() if not p.requires_grad}
stats_before = tuned.layer1.state_dict()

tune = train(tuned, *tgt_train, *tgt_test, epochs=tune_epochs, batch_size=tune_batch, lr=0.05,
             params=groups, frozen_modules=frozen, label="fine-tune")

check(all(np.array_equal(p.data, before[name]) for name, p in tuned.named_parameters()
          if name in before),
      f"the {len(before)} frozen tensors did not move (the optimizer skipped them)")
check(all(np.array_equal(v, stats_before[k]) for k, v in tuned.layer1.state_dict().items()),
      "the frozen stage's BatchNorm running statistics did not move either (eval mode)")
check(not np.array_equal(tuned.layer3.state_dict()["0.conv1.weight"],
                         pretrained.layer3.state_dict()["0.conv1.weight"]),
      "the later stages did adapt")

# %% [markdown]
# ## 4. The same network from scratch, on the same target images

# %%
manual_seed(1)
scratch_model = cifar_resnet(depth, width=width, num_classes=5)
scratch = train(scratch_model, *tgt_train, *tgt_test, epochs=tune_epochs,
                batch_size=tune_batch, lr=0.05, label="scratch")

# %% [markdown]
# ## Results

# %%
results = {"fine-tuned": tune, "from scratch": scratch}
print_table(["target task", "train loss", "train acc", "test acc"],
            [[name, f"{h['epochs'][-1]['train_loss']:.3f}", f"{h['epochs'][-1]['train_acc']:.3f}",
              f"{h['epochs'][-1]['test_acc']:.3f}"] for name, h in results.items()])
print(f"pretraining reached {pretrain['epochs'][-1]['test_acc']:.3f} test accuracy on the "
      f"source classes; chance on five classes is 0.200")
first = tune["epochs"][0]["test_acc"] - scratch["epochs"][0]["test_acc"]
gain = tune["epochs"][-1]["test_acc"] - scratch["epochs"][-1]["test_acc"]
mean_gain = (np.mean([e["test_acc"] for e in tune["epochs"]])
             - np.mean([e["test_acc"] for e in scratch["epochs"]]))
print(f"test accuracy, fine-tuned minus scratch: {first:+.3f} after the first epoch, "
      f"{mean_gain:+.3f} averaged over the {tune_epochs} epochs, {gain:+.3f} at the end")
if not QUICK:
    check(first > 0.1, f"the pretrained start is ahead after one epoch, by {first:+.3f}")
    if gain > 0:
        print(f"and it is still ahead after {tune_epochs} epochs.")
    else:
        print(f"but by epoch {tune_epochs} training from scratch is level or ahead ({gain:+.3f}): "
              f"with features pretrained this briefly, the head start is all the transfer "
              f"buys, and the frozen stage and small backbone lr then hold the network back "
              f"(compare the training accuracies).")

# %% [markdown]
# How much a pretrained start is worth depends on how good the pretrained features are and
# how little target data there is. Here the pretraining is a few minutes on about two
# thousand images (its source-class accuracy is printed above), so its features are only
# a little better than what the scratch network learns from the target images themselves.
# What it reliably buys is the head start: the fine-tuned network is useful after one
# epoch. Whether it stays ahead is printed above for this run. Freezing and a small
# learning rate protect features worth keeping; when the features are weak they also keep
# the network from fitting the new task as well as a free one. Exercise 3 asks what it
# takes for the lead to last.

# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
for name, h in results.items():
    epochs_done = [e["epoch"] for e in h["epochs"]]
    ax_loss.plot(epochs_done, [e["train_loss"] for e in h["epochs"]], marker="o", label=name)
    ax_acc.plot(epochs_done, [e["test_acc"] for e in h["epochs"]], marker="o", label=name)
ax_acc.axhline(0.2, color="gray", linestyle=":", label="chance")
ax_loss.set(xlabel="epoch", ylabel="training loss", title="target task: training loss")
ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="target task: test accuracy")
for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
show_or_save(fig, "10_fine_tuning.png")

# %% [markdown]
# ## The library version
#
# `Parameter(requires_grad=...)` in `numpy_resnet/nn/module.py`; parameter groups and the
# skip of frozen parameters in `numpy_resnet/optim/optimizer.py`; `state_dict` /
# `load_state_dict(strict=False)`; `summary(...).trainable_params`. The same
# `load_state_dict` takes torchvision's ImageNet weights converted with
# `numpy_resnet/convert.py`.
#
# ## Exercises
#
# 1. Freeze nothing and use one learning rate for everything. Is the pretrained start still
#    better than scratch? Now freeze everything but `fc` (a "linear probe").
# 2. Leave the frozen stage's BatchNorm in train mode (drop `frozen_modules`). Its weights
#    stay fixed, but what happens to its running statistics, and to the test accuracy?
# 3. Pretrain longer (all 2,600 source images, 10 or more epochs) and rerun. Does the
#    fine-tuned network now stay ahead to the end? Then halve and double the target
#    training set: how does the gap change with the amount of target data?
# 4. Swap the tasks: pretrain on the animals-and-vehicles mix of classes 5-9, fine-tune on
#    0-4. Does the direction matter?
# 5. Backward still computes gradients for frozen layers. Which part of `ResNet.backward`
#    could stop early when the stem and `layer1` are frozen, and how much time would that
#    save?
