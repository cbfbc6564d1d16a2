"""Pre-activation ResNets: counts, finite differences, the bare sum, and parity with PyTorch.

The torch reference below is written from the paper (He et al. 2016, "Identity Mappings in
Deep Residual Networks") with bearpaw/pytorch-classification's preresnet.py names: BN-ReLU
before each conv, y = shortcut + F(x) with nothing after the sum, a 1x1 projection (no BN)
that reads the block's pre-activation, and a final BN-ReLU before the pooling.
Parity recipe as in test_models.py: copy our weights through `state_dict` (strict, so the
names are checked too), then in float64 compare the logits, dL/dx, every parameter gradient,
and all weights and BN statistics after two SGD steps.
"""

from __future__ import annotations

import numpy as np
import pytest
from torch_parity_steps import assert_two_sgd_steps_match

from numpy_resnet import manual_seed
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.models import CIFAR_MODEL_NAMES, MODEL_NAMES, get_model, is_cifar_model
from numpy_resnet.nn import BatchNorm2d, CrossEntropyLoss, ReLU
from numpy_resnet.preact import (
    PreActBasicBlock,
    PreActBottleneck,
    PreActResNet,
    preact_cifar_resnet,
    preact_projection,
    preact_resnet18,
)
from numpy_resnet.train import TrainConfig

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional


@pytest.fixture(autouse=True)
def seeded():
    """Weights are drawn from the library's generator: the same ones whatever the test order."""
    manual_seed(0)


def n_params(model) -> int:
    return sum(p.data.size for p in model.parameters())


def preact(block, inplanes, planes, stride=1, residual=True):
    """A block, with the 1x1 projection when it changes the shape (as the models build it)."""
    outplanes = planes * block.expansion
    downsample = None
    if residual and (stride != 1 or inplanes != outplanes):
        downsample = preact_projection(inplanes, outplanes, stride)
    return block(inplanes, planes, stride, downsample, residual=residual)


def randomize_batchnorm(module, seed: int = 0):
    """γ (either sign), β and the running statistics of every BN set to random values."""
    rng = np.random.default_rng(seed)
    for m in module.modules():
        if isinstance(m, BatchNorm2d):
            C = m.num_features
            m.weight.data[:] = rng.uniform(0.5, 1.5, C) * rng.choice([-1, 1], C)
            m.bias.data[:] = rng.normal(0, 0.3, C)
            m.running_mean[:] = rng.normal(0, 0.3, C)
            m.running_var[:] = rng.uniform(0.5, 2.0, C)
    return module


# ----- parameter counts ------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    # kuangliu's PreActResNet18 (11,171,146) plus the final BN over 512 channels (1,024)
    ("preact_resnet18", 11_172_170),
    ("preact_resnet20", 272_282),
    ("preact_resnet56", 855_578),
    # resnet110 with option B (1,730,714) less the two projections' BNs (2·(2·32 + 2·64) = 192)
    ("preact_resnet110", 1_730_522),
    # stem conv 432 + block convs 1,634,048 + projections 41,984 (1,024 + 8,192 + 32,768)
    # + BNs 24,224 (final BN 512) + fc 2,570: the paper's 1.7 M
    ("preact_resnet164", 1_703_258),
    ("plain_preact110", 1_727_962),
    ("plain_preact164", 1_661_274),
])
def test_preact_model_has_expected_parameter_count(name, expected):
    assert n_params(get_model(name, num_classes=10)) == expected


def test_preact_cifar_nets_have_the_papers_shape():
    model = get_model("preact_resnet164")
    assert [len(s) for s in model.stages] == [18, 18, 18]
    assert isinstance(model.layer1[0], PreActBottleneck) and model.fc.in_features == 256
    assert model.layer1[0].downsample is not None and model.layer1[1].downsample is None
    model = get_model("preact_resnet110")
    assert [len(s) for s in model.stages] == [18, 18, 18]
    assert [s[0].conv1.out_channels for s in model.stages] == [16, 32, 64]
    assert model.layer1[0].downsample is None                  # 16 -> 16: the identity
    assert not any("downsample" in k for k in get_model("plain_preact110").state_dict())
    with pytest.raises(ValueError, match="6n \\+ 2"):
        preact_cifar_resnet(21)
    with pytest.raises(ValueError, match="9n \\+ 2"):
        preact_cifar_resnet(62, block=PreActBottleneck)
    with pytest.raises(ValueError, match="shortcut 'B'"):
        preact_cifar_resnet(20, shortcut="A")
    with pytest.raises(ValueError, match="CIFAR stem"):
        preact_resnet18(stem="imagenet")


@pytest.mark.parametrize("name", ["preact_resnet18", "plain_preact18", "preact_resnet20",
                                  "preact_resnet56", "preact_resnet110", "preact_resnet164",
                                  "plain_preact20", "plain_preact56", "plain_preact110",
                                  "plain_preact164"])
def test_train_config_builds_the_preact_models(name):
    assert name in MODEL_NAMES
    assert is_cifar_model(name) == (name not in ("preact_resnet18", "plain_preact18"))
    assert (name in CIFAR_MODEL_NAMES) == is_cifar_model(name)
    model = get_model(name, **TrainConfig(model=name).model_kwargs())
    assert isinstance(model, PreActResNet) and model.fc.out_features == 10
    assert all(m.residual == (not name.startswith("plain"))
               for m in model.modules() if isinstance(m, (PreActBasicBlock, PreActBottleneck)))


def test_every_relu_in_a_preact_model_is_its_own_instance():
    model = preact_cifar_resnet(20, width=4)
    relus = [m for m in model.modules() if isinstance(m, ReLU)]
    assert len(relus) == 9 * 2 + 1 and len({id(r) for r in relus}) == len(relus)


# ----- finite differences ----------------------------------------------------------------------
# name: (make the block, input shape)
BLOCKS = {
    "basic identity": (lambda: preact(PreActBasicBlock, 4, 4), (2, 4, 5, 5)),
    "basic projection stride 2": (lambda: preact(PreActBasicBlock, 3, 6, 2), (2, 3, 6, 6)),
    "basic projection stride 1, wider": (lambda: preact(PreActBasicBlock, 3, 5), (2, 3, 4, 5)),
    "basic plain identity": (lambda: preact(PreActBasicBlock, 4, 4, residual=False),
                             (2, 4, 5, 5)),
    "basic plain stride 2": (lambda: preact(PreActBasicBlock, 3, 6, 2, residual=False),
                             (2, 3, 6, 6)),
    "bottleneck identity": (lambda: preact(PreActBottleneck, 8, 2), (2, 8, 5, 5)),
    "bottleneck projection stride 1": (lambda: preact(PreActBottleneck, 4, 2), (2, 4, 5, 5)),
    "bottleneck projection stride 2": (lambda: preact(PreActBottleneck, 4, 2, 2), (2, 4, 6, 6)),
    "bottleneck plain identity": (lambda: preact(PreActBottleneck, 8, 2, residual=False),
                                  (2, 8, 5, 5)),
    "bottleneck plain stride 2": (lambda: preact(PreActBottleneck, 4, 2, 2, residual=False),
                                  (2, 4, 6, 6)),
}
# eval mode is piecewise linear per entry: a one-sided disagreement beyond rounding is a kink
KINK_TOL = {True: 1e-3, False: 1e-6}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_preact_block_backward_matches_finite_differences(name, train, engine):
    make, shape = BLOCKS[name]
    x = np.random.default_rng(1).standard_normal(shape)
    report = gradcheck(randomize_batchnorm(make()), x, train=train, max_checks=30,
                       kink_tol=KINK_TOL[train])
    assert report.ok(1e-6), str(report)
    names = {t.name for t in report.tensors}
    assert {"input", "bn1.weight", "conv1.weight", "conv2.weight"} <= names
    assert ("downsample.0.weight" in names) == (make().downsample is not None)


class ProjectionGradientToX(PreActBasicBlock):
    """A tempting bug: send the projection's gradient to x, as if it read x, not relu1(bn1(x))."""

    def backward(self, grad_output):
        d = self.conv2.backward(grad_output)
        d_pre = self.conv1.backward(self.bn2.backward(self.relu2.backward(d)))
        dx = self.bn1.backward(self.relu1.backward(d_pre))
        return dx + self.downsample.backward(grad_output)


class ReLUAfterTheSum(PreActBasicBlock):
    """The original block's habit: a ReLU's mask on the gradient that the forward never applied."""

    def backward(self, grad_output):
        return super().backward(grad_output * (grad_output > 0))


@pytest.mark.parametrize("bug, planes, stride", [(ProjectionGradientToX, 6, 2),
                                                 (ReLUAfterTheSum, 4, 1)])
def test_gradcheck_catches_a_wrong_preact_backward(bug, planes, stride):
    downsample = preact_projection(4, planes, stride) if stride != 1 else None
    block = randomize_batchnorm(bug(4, planes, stride, downsample))
    x = np.random.default_rng(1).standard_normal((2, 4, 6, 6))
    assert not gradcheck(block, x, max_checks=30, kink_tol=1e-3).ok(1e-3)


# ----- the bare sum ----------------------------------------------------------------------------
@pytest.mark.parametrize("block_type, planes", [(PreActBasicBlock, 8), (PreActBottleneck, 2)])
def test_identity_block_is_exactly_x_plus_f_of_x_forward_and_backward(block_type, planes, engine):
    # nothing after the sum: y - x = F(x) to the last bit, negative values included, and the
    # gradient at y reaches x whole: dL/dx = dL/dy + (what F sends back)
    block = randomize_batchnorm(preact(block_type, 8, planes)).to(np.float64)
    residual_free = preact(block_type, 8, planes, residual=False).to(np.float64)
    residual_free.load_state_dict(block.state_dict())          # the same F
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 8, 5, 5)), rng.standard_normal((2, 8, 5, 5))
    y, f = block(x), residual_free(x)
    np.testing.assert_array_equal(y, x + f)
    assert (y < 0).mean() > 0.2                                 # no ReLU took the negatives
    np.testing.assert_array_equal(block.backward(dy), dy + residual_free.backward(dy))


# ----- the torch reference, from the paper ------------------------------------------------------
class TorchPreActBasic(tnn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, residual=True):
        super().__init__()
        self.bn1 = tnn.BatchNorm2d(inplanes)
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.downsample, self.residual = downsample, residual

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(pre))
        return out


class TorchPreActBottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, residual=True):
        super().__init__()
        self.bn1 = tnn.BatchNorm2d(inplanes)
        self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
        self.downsample, self.residual = downsample, residual

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        out = self.conv3(F.relu(self.bn3(out)))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(pre))
        return out


class TorchPreActResNet(tnn.Module):
    def __init__(self, block, layers, num_classes=10, width=64, residual=True):
        super().__init__()
        self.inplanes, self.num_stages = width, len(layers)
        self.conv1 = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
        for i, blocks in enumerate(layers):
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            outplanes, downsample = planes * block.expansion, None
            if residual and (stride != 1 or self.inplanes != outplanes):
                downsample = tnn.Sequential(
                    tnn.Conv2d(self.inplanes, outplanes, 1, stride, bias=False))
            stage = [block(self.inplanes, planes, stride, downsample, residual)]
            self.inplanes = outplanes
            stage += [block(outplanes, planes, residual=residual) for _ in range(1, blocks)]
            setattr(self, f"layer{i + 1}", tnn.Sequential(*stage))
        self.bn = tnn.BatchNorm2d(self.inplanes)
        self.fc = tnn.Linear(self.inplanes, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


TORCH_BLOCK = {PreActBasicBlock: TorchPreActBasic, PreActBottleneck: TorchPreActBottleneck}


def test_full_size_keys_and_shapes_match_the_torch_reference():
    for name, block, layers, width in [("preact_resnet18", PreActBasicBlock, [2, 2, 2, 2], 64),
                                       ("preact_resnet110", PreActBasicBlock, [18] * 3, 16),
                                       ("preact_resnet164", PreActBottleneck, [18] * 3, 16)]:
        ours = get_model(name).state_dict()
        theirs = TorchPreActResNet(TORCH_BLOCK[block], layers, width=width).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == tuple(v.shape) for k, v in theirs.items()), name
    keys = get_model("preact_resnet18").state_dict()
    for key in ["conv1.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight",
                "layer2.0.downsample.0.weight", "bn.running_var", "fc.weight"]:
        assert key in keys, key
    assert "layer1.0.downsample.0.weight" not in keys and "bn1.weight" not in keys


# name: (block, layers, width); 16x16 images
PARITY = {
    "preact cifar [2, 1, 1] w8": (PreActBasicBlock, [2, 1, 1], dict(width=8)),
    "plain preact [2, 1, 1] w8": (PreActBasicBlock, [2, 1, 1], dict(width=8, residual=False)),
    "preact18 four stages w8": (PreActBasicBlock, [2, 2, 2, 2], dict(width=8)),
    "preact bottleneck [1, 2, 1] w4": (PreActBottleneck, [1, 2, 1], dict(width=4)),
    "plain preact bottleneck [1, 1, 1] w4": (PreActBottleneck, [1, 1, 1],
                                             dict(width=4, residual=False)),
}




@pytest.mark.parametrize("name", list(PARITY))
def test_preact_model_matches_torch_logits_gradients_and_two_sgd_steps(name, engine):
    block, layers, kwargs = PARITY[name]
    ours = PreActResNet(block, layers, num_classes=10, **kwargs).to(np.float64)
    theirs = TorchPreActResNet(TORCH_BLOCK[block], layers, num_classes=10, **kwargs).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 16, 16))
    targets = rng.integers(0, 10, 4)
    assert_two_sgd_steps_match(ours, theirs, x, targets)


def test_preact_backward_without_the_input_gradient_gives_the_same_parameter_gradients(engine):
    model = preact_cifar_resnet(8, width=4)
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
    for with_dx, without_dx in zip(*grads, strict=True):
        np.testing.assert_allclose(without_dx, with_dx, rtol=1e-5,
                                   atol=1e-6 * np.abs(with_dx).max())
