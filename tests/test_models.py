"""The model zoo against PyTorch: parameter counts, state_dict keys, and training parity.

torchvision is not a dependency, so the reference is a compact torch re-implementation of
torchvision's resnet.py (and of timm's deep stem and avg-pool shortcut for resnet50d) below.
Parity recipe: build our model, copy its weights into the torch twin through `state_dict`
(strict, so the key names are checked too), then in float64 compare the logits, dL/dx,
every parameter's gradient, and all weights and BN statistics after two SGD steps.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from torch_parity_steps import assert_two_sgd_steps_match

from numpy_resnet import manual_seed
from numpy_resnet.blocks import BasicBlock, Bottleneck
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.models import (
    CIFAR_MODEL_NAMES,
    MODEL_NAMES,
    ResNet,
    cifar_resnet,
    get_model,
    resnet18,
    resnet50,
)
from numpy_resnet.nn import AvgPool2d, BatchNorm2d, CrossEntropyLoss, Identity, ReLU

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional



@pytest.fixture(autouse=True)
def seeded():
    """Weights are drawn from the library's generator: the same ones whatever the test order."""
    manual_seed(0)


# ----- the torch reference: torchvision's resnet.py, compactly ------------------------------
class TorchBasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 residual=True, stride_in_1x1=False):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class TorchBottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 residual=True, stride_in_1x1=False):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = tnn.Conv2d(inplanes, width, 1, s1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        self.conv2 = tnn.Conv2d(width, width, 3, s3, 1, groups=groups, bias=False)
        self.bn2 = tnn.BatchNorm2d(width)
        self.conv3 = tnn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU()
        self.downsample = downsample
        self.residual = residual

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class TorchZeroPad(tnn.Module):
    """Option A: x[:, :, ::s, ::s] with zero channels appended."""

    def __init__(self, inplanes, outplanes, stride):
        super().__init__()
        self.extra, self.stride = outplanes - inplanes, stride

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


def torch_shortcut(kind, inplanes, outplanes, stride):
    if kind == "A":
        return TorchZeroPad(inplanes, outplanes, stride)
    conv = tnn.Conv2d(inplanes, outplanes, 1, stride if kind == "B" else 1, bias=False)
    if kind == "B":
        return tnn.Sequential(conv, tnn.BatchNorm2d(outplanes))
    pool = tnn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 \
        else tnn.Identity()
    return tnn.Sequential(pool, conv, tnn.BatchNorm2d(outplanes))    # timm's downsample_avg


class TorchResNet(tnn.Module):
    def __init__(self, block, layers, num_classes=1000, groups=1, width_per_group=64,
                 stem="imagenet", width=64, residual=True, shortcut="B", stride_in_1x1=False):
        super().__init__()
        self.inplanes, self.shortcut = width, shortcut
        self.block_kwargs = dict(groups=groups, base_width=width_per_group, residual=residual,
                                 stride_in_1x1=stride_in_1x1)
        if stem == "imagenet":
            self.conv1 = tnn.Conv2d(3, width, 7, 2, 3, bias=False)
        elif stem == "cifar":
            self.conv1 = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
        else:                                                   # timm's stem_type="deep"
            half = width // 2
            self.conv1 = tnn.Sequential(
                tnn.Conv2d(3, half, 3, 2, 1, bias=False), tnn.BatchNorm2d(half), tnn.ReLU(),
                tnn.Conv2d(half, half, 3, 1, 1, bias=False), tnn.BatchNorm2d(half), tnn.ReLU(),
                tnn.Conv2d(half, width, 3, 1, 1, bias=False))
        self.bn1 = tnn.BatchNorm2d(width)
        self.relu = tnn.ReLU()
        self.maxpool = tnn.Identity() if stem == "cifar" else tnn.MaxPool2d(3, 2, 1)
        self.num_stages = len(layers)
        for i, blocks in enumerate(layers):
            setattr(self, f"layer{i + 1}",
                    self._make_layer(block, width * 2 ** i, blocks, 1 if i == 0 else 2))
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(self.inplanes, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        outplanes, downsample = planes * block.expansion, None
        if self.block_kwargs["residual"] and (stride != 1 or self.inplanes != outplanes):
            downsample = torch_shortcut(self.shortcut, self.inplanes, outplanes, stride)
        layers = [block(self.inplanes, planes, stride, downsample, **self.block_kwargs)]
        self.inplanes = outplanes
        layers += [block(self.inplanes, planes, **self.block_kwargs) for _ in range(1, blocks)]
        return tnn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


TORCH_BLOCK = {BasicBlock: TorchBasicBlock, Bottleneck: TorchBottleneck}
DEPTHS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
          50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
          152: (Bottleneck, [3, 8, 36, 3])}


def torch_twin(block, layers, **kwargs):
    return TorchResNet(TORCH_BLOCK[block], layers, **kwargs)


# ----- parameter counts ------------------------------------------------------------------------
@functools.cache
def full_size(name: str):
    """Each full-size model is built once for the whole file (they take a second or three)."""
    return get_model(name)


def n_params(model) -> int:
    return sum(p.data.size for p in model.parameters())


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("resnet101", 44_549_160), ("resnet152", 60_192_808), ("resnext50_32x4d", 25_028_904),
    ("resnet50d", 25_576_264)])
def test_imagenet_model_has_torchvision_parameter_count(name, expected):
    assert n_params(full_size(name)) == expected


@pytest.mark.parametrize("make, expected", [
    (lambda: cifar_resnet(20), 269_722),
    (lambda: cifar_resnet(20, shortcut="B"), 272_474),
    (lambda: cifar_resnet(56, shortcut="B"), 855_770),
    (lambda: get_model("plain56"), 853_018),
    (lambda: cifar_resnet(110, shortcut="B"), 1_730_714),
    (lambda: get_model("plain110"), 1_727_962),
    (lambda: resnet18(num_classes=10, stem="cifar"), 11_173_962),
    (lambda: resnet18(num_classes=10, stem="cifar", width=16), 701_466),
    (lambda: get_model("plain18", num_classes=10, stem="cifar", width=16), 690_266),
    (lambda: get_model("resnet34", num_classes=10, stem="cifar", width=16), 1_334_618),
    (lambda: get_model("plain34", num_classes=10, stem="cifar", width=16), 1_323_418),
], ids=["resnet20-A", "resnet20-B", "resnet56-B", "plain56", "resnet110-B", "plain110",
        "resnet18-cifar", "resnet18-cifar-w16", "plain18-cifar-w16", "resnet34-cifar-w16",
        "plain34-cifar-w16"])
def test_small_model_has_expected_parameter_count(make, expected):
    assert n_params(make()) == expected


# ----- state_dict keys and shapes against the torch reference -----------------------------------
def assert_same_keys_and_shapes(ours, theirs):
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)              # same names, same order
    for key, value in theirs_state.items():
        assert ours_state[key].shape == tuple(value.shape), key


@pytest.mark.parametrize("name, reference", [
    ("resnet18", lambda: torch_twin(*DEPTHS[18])),
    ("resnet50", lambda: torch_twin(*DEPTHS[50])),
    ("resnext50_32x4d", lambda: torch_twin(*DEPTHS[50], groups=32, width_per_group=4)),
    ("resnet50d", lambda: torch_twin(*DEPTHS[50], stem="deep", shortcut="D")),
])
def test_full_size_state_dict_keys_and_shapes_match_torchvision(name, reference):
    assert_same_keys_and_shapes(full_size(name), reference())


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("residual", [True, False], ids=["resnet", "plain"])
def test_small_width_state_dict_matches_torch_reference(depth, residual):
    block, layers = DEPTHS[depth]
    kwargs = dict(num_classes=10, stem="cifar", width=16, residual=residual)
    ours, theirs = ResNet(block, layers, **kwargs), torch_twin(block, layers, **kwargs)
    assert_same_keys_and_shapes(ours, theirs)


def test_resnet50d_keys_follow_timm():
    keys = full_size("resnet50d").state_dict()
    for key in ["conv1.0.weight", "conv1.1.running_mean", "conv1.3.weight", "conv1.4.bias",
                "conv1.6.weight", "bn1.weight", "layer1.0.downsample.1.weight",
                "layer2.0.downsample.2.running_var", "fc.weight"]:
        assert key in keys, key
    assert keys["conv1.0.weight"].shape == (32, 3, 3, 3)
    assert keys["conv1.6.weight"].shape == (64, 32, 3, 3)
    model = full_size("resnet50d")
    assert isinstance(model.layer1[0].downsample[0], Identity)
    assert isinstance(model.layer2[0].downsample[0], AvgPool2d)


def test_plain_twin_has_no_downsample_module():
    model = get_model("plain18", num_classes=10, stem="cifar", width=8)
    assert not any("downsample" in name for name, _ in model.named_modules())
    assert all(not m.residual for m in model.modules() if isinstance(m, BasicBlock))


def test_cifar_stem_keeps_torchvision_keys_and_has_no_maxpool():
    model = resnet18(num_classes=10, stem="cifar")
    assert model.conv1.kernel_size == 3 and model.conv1.stride == 1
    assert isinstance(model.maxpool, Identity)
    assert list(model.state_dict())[:2] == ["conv1.weight", "bn1.weight"]


# ----- parity with torch: logits, gradients, two SGD steps --------------------------------------
# name: (block, layers, ResNet's keyword arguments, image size); 16x16 unless the stem needs more
PARITY = {
    "resnet18 cifar-stem w8": (BasicBlock, [2, 2, 2, 2], dict(stem="cifar"), 16),
    "resnet50 cifar-stem w8": (Bottleneck, [3, 4, 6, 3], dict(stem="cifar"), 16),
    "plain18 cifar-stem w8": (BasicBlock, [2, 2, 2, 2], dict(stem="cifar", residual=False), 16),
    "plain bottleneck w8": (Bottleneck, [1, 2, 1, 1], dict(stem="cifar", residual=False), 16),
    "resnet18 imagenet-stem w8": (BasicBlock, [2, 2, 2, 2], dict(stem="imagenet"), 32),
    "bottleneck v1 stride_in_1x1 w8": (Bottleneck, [1, 2, 1, 1],
                                       dict(stem="cifar", stride_in_1x1=True), 16),
    "resnext 4x16d w8": (Bottleneck, [1, 2, 1, 1],
                         dict(stem="cifar", groups=4, width_per_group=16), 16),
    "resnet-D deep stem w8, odd sizes": (Bottleneck, [1, 2, 1, 1],
                                         dict(stem="deep", shortcut="D"), 18),
    "cifar resnet14 option A w8": (BasicBlock, [2, 2, 2], dict(stem="cifar", shortcut="A"), 16),
}




@pytest.mark.parametrize("name", list(PARITY))
def test_model_matches_torch_logits_gradients_and_two_sgd_steps(name, engine):
    block, layers, kwargs, size = PARITY[name]
    kwargs = dict(num_classes=10, width=8, **kwargs)
    ours = ResNet(block, layers, **kwargs).to(np.float64)
    theirs = torch_twin(block, layers, **kwargs).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, size, size))
    targets = rng.integers(0, 10, 4)
    assert_two_sgd_steps_match(ours, theirs, x, targets)


# ----- end-to-end gradient checks ----------------------------------------------------------------
def randomize_batchnorm(model, seed=0):
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            C = m.num_features
            m.weight.data[:] = rng.uniform(0.5, 1.5, C)
            m.bias.data[:] = rng.normal(0, 0.3, C)
            m.running_mean[:] = rng.normal(0, 0.3, C)
            m.running_var[:] = rng.uniform(0.5, 2.0, C)
    return model


@pytest.mark.parametrize("train", [True, pytest.param(False, marks=pytest.mark.slow)],
                         ids=["train", "eval"])
@pytest.mark.parametrize("make", [
    lambda: cifar_resnet(8, width=4),
    lambda: ResNet(Bottleneck, [1, 1], num_classes=5, stem="cifar", width=4),
], ids=["cifar resnet8 option A", "two-stage bottleneck net"])
def test_tiny_resnet_backward_matches_finite_differences(make, train, engine):
    # a few sampled entries of every tensor; the blocks are checked exhaustively elsewhere
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    # eval mode is piecewise linear per entry: any one-sided disagreement is a ReLU kink
    report = gradcheck(randomize_batchnorm(make()), x, train=train, max_checks=4,
                       kink_tol=1e-3 if train else 1e-6)
    assert report.ok(1e-6), str(report)


# ----- construction details and the registry ------------------------------------------------------
def test_init_follows_torchvision():
    model = cifar_resnet(20)
    w = model.layer3[1].conv1.weight.data                    # 64 · 3 · 3 = fan_out 576
    assert abs(w.std() - np.sqrt(2 / 576)) < 0.1 * np.sqrt(2 / 576)
    bns = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    assert all((bn.weight.data == 1).all() and (bn.bias.data == 0).all() for bn in bns)


def test_zero_init_residual_zeroes_the_last_bn_of_every_block():
    model = resnet50(width=8, stem="cifar", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16 and all((b.bn3.weight.data == 0).all() for b in blocks)
    assert (model.bn1.weight.data == 1).all()
    with pytest.raises(ValueError, match="residual=True"):
        get_model("plain18", zero_init_residual=True)


def test_every_relu_in_a_model_is_its_own_instance():
    model = resnet50(width=8, stem="cifar")
    relus = [m for m in model.modules() if isinstance(m, ReLU)]
    assert len(relus) == 1 + 16 * 3 and len({id(r) for r in relus}) == len(relus)


def test_cifar_nets_are_6n_plus_2_layers_deep():
    for depth in [20, 32, 44, 56, 110]:
        model = cifar_resnet(depth)
        convs = sum(1 for name, _ in model.named_modules() if name.endswith(("conv1", "conv2")))
        assert convs + 1 == depth                           # stem + 2 per block, + fc
        assert [s[0].conv1.out_channels for s in model.stages] == [16, 32, 64]
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(21)


def test_model_names_resolve():
    for name in ["resnet18", "plain18", "resnet56", "plain56", "cifar_resnet20", "resnet50d",
                 "resnext50_32x4d", "resnet110", "plain152"]:
        assert name in MODEL_NAMES
    for name in ["resnet20", "plain20", "cifar_resnet20", "resnet32", "plain44", "resnet56"]:
        model = get_model(name)
        assert model(np.zeros((2, 3, 8, 8), np.float32)).shape == (2, 10)
    assert n_params(get_model("plain56")) == n_params(cifar_resnet(56, residual=False))
    assert set(CIFAR_MODEL_NAMES) <= set(MODEL_NAMES) and "resnet18" not in CIFAR_MODEL_NAMES
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        get_model("resnet19")
    with pytest.raises(ValueError, match="plain net"):
        get_model("plain18", residual=True)


def test_stride_in_1x1_is_for_bottlenecks_only():
    with pytest.raises(ValueError, match="Bottleneck"):
        resnet18(stride_in_1x1=True)


def test_resnet_backward_before_forward_names_the_layer():
    model = cifar_resnet(8, width=4)
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.zeros((1, 10), np.float32))


def test_backward_without_the_input_gradient_gives_the_same_parameter_gradients(engine):
    # training asks for no dL/dx (the images need none): the first conv skips dx, nothing else changes
    model = cifar_resnet(8, width=4)
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 3, 9])
    criterion = CrossEntropyLoss()
    grads = []
    for need_input_grad in (True, False):
        model.zero_grad()
        criterion(model(x), y)
        dx = model.backward(criterion.backward(), need_input_grad=need_input_grad)
        assert (dx is not None) == need_input_grad
        grads.append([p.grad.copy() for p in model.parameters()])
    (conv1_with_dx, *rest_with_dx), (conv1_without_dx, *rest_without_dx) = grads
    for with_dx, without_dx in zip(rest_with_dx, rest_without_dx, strict=True):
        np.testing.assert_array_equal(with_dx, without_dx)
    # conv1's dW itself may come by another route (from an im2col of x instead of dY's, which
    # dx needs): the same sums in another order
    np.testing.assert_allclose(conv1_without_dx, conv1_with_dx, rtol=1e-5,
                               atol=1e-6 * np.abs(conv1_with_dx).max())
    assert dx is None and np.abs(conv1_without_dx).sum() > 0
