"""Gated and scaled shortcuts (gated.py, He et al. 2016 §3.1) against finite differences,
their limits, and a PyTorch twin.

The limits pin down which product multiplies which path: as b_g → −∞ the gate closes
(g → 0) and as b_g → +∞ it opens (g → 1), so the blocks must become blocks we already trust:

    exclusive       g → 0:  y = relu(s(x)), the block skipped     g → 1:  the plain block
    shortcut-only   g → 0:  the original block                    g → 1:  the plain block
    scaled          λ_F = λ_s = 1:  the original block
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from torch_parity_steps import assert_two_sgd_steps_match

from numpy_resnet import manual_seed
from numpy_resnet.blocks import BasicBlock
from numpy_resnet.gated import GATE_BIAS, ExclusiveGatedBlock, ScaledBlock, ShortcutGatedBlock
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.gradcheck_cases import all_cases
from numpy_resnet.models import CIFAR_MODEL_NAMES, ResNet, cifar_resnet, get_model, is_cifar_model
from numpy_resnet.nn import BatchNorm2d, ReLU, Sigmoid
from numpy_resnet.shortcuts import ZeroPadShortcut, make_shortcut
from numpy_resnet.train import TrainConfig

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional

GATED = (ExclusiveGatedBlock, ShortcutGatedBlock, ScaledBlock)
KIND = {ExclusiveGatedBlock: "exclusive", ShortcutGatedBlock: "shortcut-only", ScaledBlock: "scaled"}


@pytest.fixture(autouse=True)
def seeded():
    manual_seed(0)


def n_params(model) -> int:
    return sum(p.data.size for p in model.parameters())


def randomize_batchnorm(model, seed=0):
    """γ ≠ 1, β ≠ 0 and running statistics that are not 0 and 1: no term can hide."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            C = m.num_features
            m.weight.data[:] = rng.uniform(0.5, 1.5, C)
            m.bias.data[:] = rng.normal(0, 0.3, C)
            m.running_mean[:] = rng.normal(0, 0.3, C)
            m.running_var[:] = rng.uniform(0.5, 2.0, C)
    return model


# ----- gradient checks: every block, identity and downsampling shortcuts, both engines ---------
GATED_CASES = [c for c in all_cases() if c.name.split()[0] in {cls.__name__ for cls in GATED}]


def test_every_gated_block_has_gradcheck_cases_with_and_without_a_downsample():
    for cls in GATED:
        names = [c.name for c in GATED_CASES if c.name.startswith(cls.__name__)]
        assert any("identity" in n for n in names) and any("shortcut" in n for n in names), names


@pytest.mark.parametrize("case", GATED_CASES, ids=lambda c: c.name)
def test_gated_block_backward_matches_finite_differences_in_float64(case, engine):
    # every entry of every tensor (the blocks are small), the gate's W_g and b_g included
    block = randomize_batchnorm(case.make())
    report = gradcheck(block, *case.inputs(np.random.default_rng(0)), train=True)
    assert report.ok(1e-6), str(report)
    names = {t.name for t in report.tensors}
    assert ("gate.weight" in names and "gate.bias" in names) == (not isinstance(block, ScaledBlock))


@pytest.mark.parametrize("cls", GATED, ids=KIND.get)
def test_gated_block_at_the_models_gate_bias_matches_finite_differences(cls, engine):
    # b_g = −6: g ≈ 0.0025, F's gradients are 400 times smaller than the shortcut's
    block = randomize_batchnorm(cls(3, 6, 2, ZeroPadShortcut(3, 6, 2)))
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    report = gradcheck(block, x, train=True, max_checks=40)
    assert report.ok(1e-6), str(report)


def test_sigmoid_matches_torch_and_does_not_overflow():
    x = np.array([-1000.0, -50.0, -6.0, -1e-3, 0.0, 0.3, 6.0, 50.0, 1000.0])
    sigmoid = Sigmoid()
    with np.errstate(over="raise"):
        y = sigmoid(x)
    np.testing.assert_allclose(y, torch.sigmoid(torch.tensor(x)).numpy(), rtol=1e-15, atol=0)
    dy = np.linspace(-1, 1, x.size)
    np.testing.assert_allclose(sigmoid.backward(dy), dy * y * (1 - y), rtol=1e-15)


# ----- the limits: the gate closed or open, the scales at 1 -------------------------------------
def forward_backward(block, x, dy):
    block.zero_grad()
    y = block(x)
    dx = block.backward(dy)
    return y, dx, {name: p.grad.copy() for name, p in block.named_parameters()}


def twin_with_the_same_branch(gated, residual):
    """A BasicBlock with the gated block's conv1, bn1, conv2, bn2 and shortcut."""
    twin = BasicBlock(gated.conv1.in_channels, gated.conv1.out_channels, gated.stride,
                      copy.deepcopy(gated.downsample) if residual else None, residual=residual)
    for name in ("conv1", "bn1", "conv2", "bn2"):
        setattr(twin, name, copy.deepcopy(getattr(gated, name)))
    return twin.to(np.float64)


def make_pair(cls, shortcut, residual, **kwargs):
    inplanes, stride = (4, 1) if shortcut is None else (3, 2)
    downsample = None if shortcut is None else make_shortcut(shortcut, inplanes, 4, stride)
    block = randomize_batchnorm(cls(inplanes, 4, stride, downsample, **kwargs)).to(np.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, inplanes, 6, 6))
    dy = rng.standard_normal((2, 4, 6 // stride, 6 // stride))
    return block, twin_with_the_same_branch(block, residual), x, dy


def assert_same_block(block, twin, x, dy):
    y, dx, grads = forward_backward(block, x, dy)
    y_twin, dx_twin, grads_twin = forward_backward(twin, x, dy)
    np.testing.assert_allclose(y, y_twin, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_twin, rtol=1e-12, atol=1e-12)
    for name, grad in grads_twin.items():
        np.testing.assert_allclose(grads[name], grad, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("shortcut", [None, "A", "B"], ids=["identity", "A", "B"])
def test_exclusive_gate_closed_skips_the_block(shortcut, engine):
    # b_g = −50: g ≈ 1e-22, y = relu(s(x)); the gradient reaches x only through the shortcut
    block, _, x, dy = make_pair(ExclusiveGatedBlock, shortcut, True, gate_bias=-50.0)
    y, dx, grads = forward_backward(block, x, dy)
    skip = copy.deepcopy(block.downsample)
    s = x if skip is None else skip(x)
    np.testing.assert_allclose(y, np.maximum(s, 0), rtol=0, atol=1e-15)
    ds = dy * (s > 0)
    np.testing.assert_allclose(dx, ds if skip is None else skip.backward(ds), rtol=0, atol=1e-15)
    assert np.abs(grads["conv1.weight"]).max() < 1e-15        # F gets g ⊙ d ≈ 0


@pytest.mark.parametrize("shortcut", [None, "A", "B"], ids=["identity", "A", "B"])
@pytest.mark.parametrize("cls", [ExclusiveGatedBlock, ShortcutGatedBlock], ids=KIND.get)
def test_gate_open_is_the_plain_block(cls, shortcut, engine):
    block, plain, x, dy = make_pair(cls, shortcut, False, gate_bias=50.0)   # g = 1 exactly
    assert_same_block(block, plain, x, dy)


@pytest.mark.parametrize("shortcut", [None, "A", "B"], ids=["identity", "A", "B"])
def test_shortcut_only_gate_closed_is_the_original_block(shortcut, engine):
    block, original, x, dy = make_pair(ShortcutGatedBlock, shortcut, True, gate_bias=-50.0)
    assert_same_block(block, original, x, dy)


@pytest.mark.parametrize("shortcut", [None, "A", "B"], ids=["identity", "A", "B"])
def test_scaling_by_one_is_the_original_block(shortcut, engine):
    block, original, x, dy = make_pair(ScaledBlock, shortcut, True, shortcut_scale=1.0,
                                       branch_scale=1.0)
    assert_same_block(block, original, x, dy)


def test_constant_scaling_shrinks_the_direct_gradient_by_half_per_block():
    # F silenced (bn2's γ = β = 0) and a positive input: each block is y = 0.5 x, so after k
    # blocks the gradient at the input is 0.5^k of the output's: the product that λ_s^L is
    blocks = [ScaledBlock(4, 4).to(np.float64) for _ in range(5)]
    for b in blocks:
        b.bn2.weight.data[:] = 0
        b.bn2.bias.data[:] = 0
    x = np.random.default_rng(3).uniform(0.5, 1.0, (2, 4, 4, 4))
    y = x
    for b in blocks:
        y = b(y)
    np.testing.assert_allclose(y, 0.5 ** 5 * x, rtol=1e-15)
    d = np.ones_like(y)
    for b in reversed(blocks):
        d = b.backward(d)
    np.testing.assert_allclose(d, np.full_like(x, 0.5 ** 5), rtol=1e-15)


# ----- the PyTorch twin --------------------------------------------------------------------------
class TorchZeroPad(tnn.Module):
    def __init__(self, inplanes, outplanes, stride):
        super().__init__()
        self.extra, self.stride = outplanes - inplanes, stride

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


def torch_shortcut(kind, inplanes, outplanes, stride):
    if kind == "A":
        return TorchZeroPad(inplanes, outplanes, stride)
    return tnn.Sequential(tnn.Conv2d(inplanes, outplanes, 1, stride, bias=False),
                          tnn.BatchNorm2d(outplanes))


class TorchGatedBlock(tnn.Module):
    """The three variants, written with autograd; attribute names as gated.py's."""

    def __init__(self, cls, inplanes, planes, stride, downsample, gate_bias=GATE_BIAS,
                 shortcut_scale=0.5, branch_scale=0.5):
        super().__init__()
        self.cls, self.shortcut_scale, self.branch_scale = cls, shortcut_scale, branch_scale
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample
        if cls is not ScaledBlock:
            self.gate = tnn.Conv2d(inplanes, planes, 1, stride, bias=True)

    def forward(self, x):
        f = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = x if self.downsample is None else self.downsample(x)
        if self.cls is ScaledBlock:
            return F.relu(self.branch_scale * f + self.shortcut_scale * s)
        g = torch.sigmoid(self.gate(x))
        if self.cls is ExclusiveGatedBlock:
            return F.relu(g * f + (1 - g) * s)
        return F.relu(f + (1 - g) * s)


class TorchCifarNet(tnn.Module):
    def __init__(self, cls, layers, width, shortcut, block_args):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        inplanes = width
        for i, n in enumerate(layers):
            planes, blocks = width * 2 ** i, []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                downsample = None
                if stride != 1 or inplanes != planes:
                    downsample = torch_shortcut(shortcut, inplanes, planes, stride)
                blocks.append(TorchGatedBlock(cls, inplanes, planes, stride, downsample,
                                              **block_args))
                inplanes = planes
            setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.fc = tnn.Linear(inplanes, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))




PARITY = {      # name: (block, shortcut, block_args); b_g = −1 so that F's gradients are not tiny
    "exclusive A": (ExclusiveGatedBlock, "A", {"gate_bias": -1.0}),
    "exclusive B": (ExclusiveGatedBlock, "B", {"gate_bias": -1.0}),
    "exclusive A b_g=-6": (ExclusiveGatedBlock, "A", {}),
    "shortcut-only A": (ShortcutGatedBlock, "A", {"gate_bias": -1.0}),
    "shortcut-only B": (ShortcutGatedBlock, "B", {"gate_bias": -1.0}),
    "scaled 0.5/0.5 A": (ScaledBlock, "A", {}),
    "scaled F unscaled B": (ScaledBlock, "B", {"branch_scale": 1.0}),
}


@pytest.mark.parametrize("name", list(PARITY))
def test_gated_net_matches_torch_logits_gradients_and_two_sgd_steps(name, engine):
    cls, shortcut, block_args = PARITY[name]
    layers, width = [2, 2, 2], 8
    ours = ResNet(cls, layers, num_classes=10, stem="cifar", width=width, shortcut=shortcut,
                  block_args=block_args).to(np.float64)
    randomize_batchnorm(ours)
    theirs = TorchCifarNet(cls, layers, width, shortcut, block_args).double()
    state = {k: torch.tensor(v) for k, v in ours.state_dict().items()}
    assert list(state) == list(theirs.state_dict())                 # same names, same order
    theirs.load_state_dict(state)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 16, 16))
    targets = rng.integers(0, 10, 4)
    assert_two_sgd_steps_match(ours, theirs, x, targets)


# ----- the models ------------------------------------------------------------------------------
# Option A (no parameters) where the shape changes, as cifar_resnet builds it; each gate is a
# 1x1 conv with bias, inplanes·planes + planes: per stage of n blocks (16, 32, 64 channels)
#     n·272,   544 + (n−1)·1056,   2112 + (n−1)·4160
# so 13,904 for n = 3, 46,832 for n = 9 and 96,224 for n = 18 on top of resnet20/56/110.
@pytest.mark.parametrize("name, expected", [
    ("gated20", 283_626), ("gated56", 899_850), ("gated110", 1_824_186),
    ("shortcutgated20", 283_626), ("shortcutgated56", 899_850), ("shortcutgated110", 1_824_186),
    ("scaled20", 269_722), ("scaled56", 853_018), ("scaled110", 1_727_962),
])
def test_gated_cifar_net_has_expected_parameter_count(name, expected):
    assert n_params(get_model(name)) == expected


def test_gated_nets_count_resnets_parameters_plus_their_gates():
    for depth in (20, 56, 110):
        gates = sum(n_params(m.gate) for m in get_model(f"gated{depth}").modules()
                    if isinstance(m, ExclusiveGatedBlock))
        assert n_params(get_model(f"gated{depth}")) == n_params(cifar_resnet(depth)) + gates


@pytest.mark.parametrize("kind", ["gated", "shortcutgated", "scaled"])
def test_gated_names_are_cifar_nets_that_train_config_builds(kind):
    for depth in (20, 56, 110):
        name = f"{kind}{depth}"
        assert is_cifar_model(name) and name in CIFAR_MODEL_NAMES
    model = get_model(f"{kind}20", **TrainConfig(model=f"{kind}20").model_kwargs())
    assert model.fc.out_features == 10
    assert model(np.zeros((2, 3, 8, 8), np.float32)).shape == (2, 10)
    with pytest.raises(ValueError, match="residual=True"):
        get_model(f"{kind}20", residual=False)


def test_gated110_is_110_layers_deep_with_every_gate_bias_at_minus_6():
    model = get_model("gated110")
    blocks = [m for m in model.modules() if isinstance(m, ExclusiveGatedBlock)]
    assert len(blocks) == 54 and 2 * len(blocks) + 2 == 110       # stem + 2 per block + fc
    assert all((b.gate.bias.data == GATE_BIAS).all() for b in blocks) and GATE_BIAS == -6.0
    assert all(isinstance(b.downsample, (type(None), ZeroPadShortcut)) for b in blocks)
    w = model.layer3[1].gate.weight.data                          # He-normal, fan_out = 64
    assert abs(w.std() - np.sqrt(2 / 64)) < 0.1 * np.sqrt(2 / 64)


def test_every_relu_and_sigmoid_in_a_gated_net_is_its_own_instance():
    model = get_model("gated20")
    layers = [m for m in model.modules() if isinstance(m, (ReLU, Sigmoid))]
    assert len(layers) == 1 + 9 * 3 and len({id(m) for m in layers}) == len(layers)


@pytest.mark.parametrize("kind", ["gated", "shortcutgated", "scaled"])
def test_zero_init_residual_zeroes_bn2_of_every_gated_block(kind):
    model = get_model(f"{kind}20", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, GATED)]
    assert len(blocks) == 9 and all((b.bn2.weight.data == 0).all() for b in blocks)
