"""BasicBlock, Bottleneck and the shortcuts: finite differences, the skip's gradient, the keys.

Every block is checked whole, in float64, against central differences (numpy_resnet's
gradcheck), in train and in eval mode, with each kind of shortcut and as a plain twin.
BatchNorm's γ, β and running statistics are randomised first, so that no term of the
backward can hide behind γ = 1, β = 0, μ = 0, σ² = 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from numpy_resnet import manual_seed
from numpy_resnet.blocks import BasicBlock, Bottleneck
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.nn import AvgPool2d, BatchNorm2d, Identity, ReLU
from numpy_resnet.shortcuts import ZeroPadShortcut, make_shortcut


@pytest.fixture(autouse=True)
def seeded():
    """Weights are drawn from the library's generator: the same ones whatever the test order."""
    manual_seed(0)


def randomize_batchnorm(module, seed: int = 0):
    """γ, β, running_mean, running_var of every BatchNorm set to random values."""
    rng = np.random.default_rng(seed)
    for m in module.modules():
        if isinstance(m, BatchNorm2d):
            C = m.num_features
            m.weight.data[:] = rng.uniform(0.5, 1.5, C) * rng.choice([-1, 1], C)
            m.bias.data[:] = rng.normal(0, 0.3, C)
            m.running_mean[:] = rng.normal(0, 0.3, C)
            m.running_var[:] = rng.uniform(0.5, 2.0, C)
    return module


def basic(inplanes, planes, stride=1, shortcut=None, residual=True):
    downsample = None if shortcut is None else make_shortcut(shortcut, inplanes, planes, stride)
    return BasicBlock(inplanes, planes, stride, downsample, residual=residual)


def bottleneck(inplanes, planes, stride=1, shortcut=None, residual=True, **kwargs):
    downsample = None
    if shortcut is not None:
        downsample = make_shortcut(shortcut, inplanes, planes * 4, stride)
    return Bottleneck(inplanes, planes, stride, downsample, residual=residual, **kwargs)


# In eval mode a block is piecewise linear in each single input or weight entry, so one-sided
# differences agree to rounding unless x ± h straddles a ReLU kink: flag any disagreement. In
# train mode BatchNorm makes it smooth and curved, and one-sided differences differ by O(h).
KINK_TOL = {True: 1e-3, False: 1e-6}

# name: (make the block, input shape)
BLOCKS = {
    "basic identity": (lambda: basic(6, 6), (2, 6, 6, 6)),
    "basic projection B stride 2": (lambda: basic(4, 8, 2, "B"), (2, 4, 6, 6)),
    "basic zero-pad A stride 2": (lambda: basic(4, 8, 2, "A"), (2, 4, 6, 6)),
    "basic avg-pool D stride 2, odd size": (lambda: basic(4, 8, 2, "D"), (2, 4, 7, 7)),
    "basic plain stride 2": (lambda: basic(4, 8, 2, residual=False), (2, 4, 6, 6)),
    "basic plain identity": (lambda: basic(6, 6, residual=False), (2, 6, 6, 6)),
    "bottleneck identity": (lambda: bottleneck(8, 2), (2, 8, 6, 6)),
    "bottleneck projection B stride 1": (lambda: bottleneck(4, 2, 1, "B"), (2, 4, 6, 6)),
    "bottleneck projection B stride 2": (lambda: bottleneck(4, 2, 2, "B"), (2, 4, 6, 6)),
    "bottleneck zero-pad A stride 2": (lambda: bottleneck(4, 2, 2, "A"), (2, 4, 6, 6)),
    "bottleneck avg-pool D stride 1": (lambda: bottleneck(4, 2, 1, "D"), (2, 4, 6, 6)),
    "bottleneck avg-pool D stride 2": (lambda: bottleneck(4, 2, 2, "D"), (2, 4, 6, 6)),
    "bottleneck v1 stride_in_1x1": (lambda: bottleneck(4, 2, 2, "B", stride_in_1x1=True),
                                    (2, 4, 6, 6)),
    "bottleneck grouped (ResNeXt)": (lambda: bottleneck(8, 2, 2, "B", groups=2, base_width=128),
                                     (2, 8, 6, 6)),
    "bottleneck plain stride 2": (lambda: bottleneck(4, 2, 2, residual=False), (2, 4, 6, 6)),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_backward_matches_finite_differences(name, train):
    make, shape = BLOCKS[name]
    block = randomize_batchnorm(make())
    x = np.random.default_rng(1).standard_normal(shape)
    report = gradcheck(block, x, train=train, max_checks=25, kink_tol=KINK_TOL[train])
    assert report.ok(1e-6), str(report)
    names = {t.name for t in report.tensors}
    assert {"input", "conv1.weight", "bn1.weight"} <= names


def test_zero_pad_shortcut_backward_is_the_adjoint_of_forward():
    # <A x, y> = <x, Aᵀ y> for the linear map A = subsample-and-pad
    rng = np.random.default_rng(0)
    shortcut = ZeroPadShortcut(3, 8, stride=2)
    x = rng.standard_normal((2, 3, 7, 5))
    y = rng.standard_normal((2, 8, 4, 3))
    Ax = shortcut(x)
    assert Ax.shape == y.shape
    assert np.isclose(np.vdot(Ax, y), np.vdot(x, shortcut.backward(y)))


def test_zero_pad_shortcut_keeps_input_channels_first_and_zeros_after():
    x = np.arange(2 * 2 * 4 * 4, dtype=np.float64).reshape(2, 2, 4, 4)
    y = ZeroPadShortcut(2, 5, stride=2)(x)
    np.testing.assert_array_equal(y[:, :2], x[:, :, ::2, ::2])
    assert not y[:, 2:].any()


def test_zero_pad_shortcut_keeps_the_input_memory_order():
    x = np.arange(2 * 2 * 4 * 4, dtype=np.float32).reshape(2, 2, 4, 4)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for given, contiguous in ((x, "C"), (channels_last, "channels-last")):
        y = ZeroPadShortcut(2, 5, stride=2)(given)
        np.testing.assert_array_equal(y[:, :2], x[:, :, ::2, ::2])
        assert not y[:, 2:].any()
        memory = y if contiguous == "C" else y.transpose(0, 2, 3, 1)
        assert memory.flags.c_contiguous, contiguous


def test_block_with_zero_last_gamma_is_relu_of_its_input_forward_and_backward():
    # γ = 0 in the last BN silences F: y = relu(x), and the whole gradient takes the skip
    for block, x_shape in [(basic(4, 4), (2, 4, 5, 5)), (bottleneck(8, 2), (2, 8, 5, 5))]:
        block.to(np.float64)
        last_bn = block.bn2 if isinstance(block, BasicBlock) else block.bn3
        last_bn.weight.data[:] = 0
        rng = np.random.default_rng(0)
        x, dy = rng.standard_normal(x_shape), rng.standard_normal(x_shape)
        np.testing.assert_array_equal(block(x), np.maximum(x, 0))
        np.testing.assert_array_equal(block.backward(dy), dy * (x > 0))


def test_plain_twin_has_the_same_layers_without_the_projection():
    residual, plain = basic(4, 8, 2, "B").state_dict(), basic(4, 8, 2, residual=False).state_dict()
    assert [k for k in residual if not k.startswith("downsample.")] == list(plain)
    assert residual.keys() - plain.keys() == {
        "downsample.0.weight", "downsample.1.weight", "downsample.1.bias",
        "downsample.1.running_mean", "downsample.1.running_var",
        "downsample.1.num_batches_tracked"}


def test_plain_block_rejects_a_downsample_module():
    with pytest.raises(ValueError, match="plain block"):
        BasicBlock(4, 8, 2, make_shortcut("B", 4, 8, 2), residual=False)


def test_block_that_changes_shape_without_downsample_says_so(engine):   # the fast twin checks it too
    with pytest.raises(ValueError, match="pass a downsample module"):
        basic(4, 8, 2)(np.zeros((1, 4, 6, 6), np.float32))


def test_basic_block_rejects_groups_like_torchvision():
    with pytest.raises(ValueError, match="groups=1"):
        BasicBlock(4, 4, groups=2)


def test_block_keys_are_torchvision_keys():
    keys = list(basic(4, 8, 2, "B").state_dict())
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert keys == (["conv1.weight"] + [f"bn1.{k}" for k in bn] + ["conv2.weight"]
                    + [f"bn2.{k}" for k in bn] + ["downsample.0.weight"]
                    + [f"downsample.1.{k}" for k in bn])
    keys = list(bottleneck(4, 2, 2, "D").state_dict())
    assert keys[-6:] == ["downsample.1.weight"] + [f"downsample.2.{k}" for k in bn]
    assert "conv3.weight" in keys and "bn3.running_var" in keys


def test_resnet_d_shortcut_pools_only_when_it_strides():
    assert isinstance(make_shortcut("D", 4, 8, 1)[0], Identity)
    pool = make_shortcut("D", 4, 8, 2)[0]
    assert isinstance(pool, AvgPool2d) and pool.ceil_mode and not pool.count_include_pad


def test_bottleneck_width_follows_torchvision():
    # width = int(planes · base_width / 64) · groups: ResNeXt-50 32x4d's first stage is 128
    block = Bottleneck(64, 64, groups=32, base_width=4, downsample=make_shortcut("B", 64, 256, 1))
    assert block.conv1.out_channels == 128 and block.conv2.groups == 32
    assert block.conv3.out_channels == 256


def test_stride_sits_on_the_3x3_in_v1_5_and_on_the_first_1x1_in_v1():
    v15 = bottleneck(4, 2, 2, "B")
    v1 = bottleneck(4, 2, 2, "B", stride_in_1x1=True)
    assert (v15.conv1.stride, v15.conv2.stride) == (1, 2)
    assert (v1.conv1.stride, v1.conv2.stride) == (2, 1)


def test_each_relu_in_a_block_is_its_own_instance():
    block = bottleneck(4, 2, 2, "B")
    relus = [m for m in block.modules() if isinstance(m, ReLU)]
    assert len(relus) == 3 and len({id(r) for r in relus}) == 3
