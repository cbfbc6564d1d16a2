"""Res2Net against timm: parameter counts, state_dict keys, gradients and PyTorch parity.

The reference is timm's res2net.py (timm/models/res2net.py, `Bottle2neck` and the
res2net50_26w_4s / res2net101_26w_4s / res2next50 constructors), transcribed below as a
compact torch twin, since timm is not a dependency. Parity recipe as in test_models.py:
copy our weights into the twin through `state_dict` (strict, so the names are checked too),
then compare in float64 the output, dL/dx and every parameter's gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch_parity_steps import assert_close, assert_two_sgd_steps_match

from numpy_resnet import manual_seed
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.gradcheck_cases import BLOCK_CASES
from numpy_resnet.models import MODEL_NAMES, ResNet, get_model
from numpy_resnet.res2net import Bottle2neck, Concat, Split
from numpy_resnet.shortcuts import make_shortcut
from numpy_resnet.summary import summary
from numpy_resnet.train import TrainConfig

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional


@pytest.fixture(autouse=True)
def seeded():
    manual_seed(0)


def n_params(model) -> int:
    return sum(p.data.size for p in model.parameters())


# ----- the three models: counts, keys, cost ---------------------------------------------------
@pytest.mark.parametrize("name, count", [
    ("res2net50_26w_4s", 25_699_120),
    ("res2net101_26w_4s", 45_206_688),
    ("res2next50", 24_671_464),
])
def test_res2net_models_have_timms_exact_parameter_counts(name, count):
    assert n_params(get_model(name)) == count


def timm_res2net_keys(layers, scale=4) -> list[str]:
    """The state_dict keys of timm's ResNet(Bottle2neck, layers), written from its naming:
    conv1, bn1, then per block conv1, bn1, convs.i, bns.i, conv3, bn3 and, in each stage's
    first block, downsample.0 (1x1 conv) and downsample.1 (BN); then fc."""
    def bn(prefix):
        return [f"{prefix}.{k}" for k in
                ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    keys = ["conv1.weight", *bn("bn1")]
    for stage, blocks in enumerate(layers, start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            keys += [f"{p}.conv1.weight", *bn(f"{p}.bn1")]
            keys += [f"{p}.convs.{i}.weight" for i in range(scale - 1)]
            for i in range(scale - 1):
                keys += bn(f"{p}.bns.{i}")
            keys += [f"{p}.conv3.weight", *bn(f"{p}.bn3")]
            if b == 0:
                keys += [f"{p}.downsample.0.weight", *bn(f"{p}.downsample.1")]
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("name, layers", [
    ("res2net50_26w_4s", [3, 4, 6, 3]),
    ("res2net101_26w_4s", [3, 4, 23, 3]),
    ("res2next50", [3, 4, 6, 3]),
])
def test_state_dict_keys_are_timms_in_timms_order(name, layers):
    assert list(get_model(name).state_dict()) == timm_res2net_keys(layers)


def test_state_dict_shapes_follow_timms_widths():
    res2net = get_model("res2net50_26w_4s").state_dict()
    assert res2net["layer1.0.conv1.weight"].shape == (104, 64, 1, 1)        # 4 groups of 26
    assert res2net["layer1.0.convs.0.weight"].shape == (26, 26, 3, 3)
    assert res2net["layer4.2.convs.2.weight"].shape == (208, 208, 3, 3)     # 26 · 8
    assert res2net["layer4.2.conv3.weight"].shape == (2048, 832, 1, 1)
    res2next = get_model("res2next50").state_dict()
    assert res2next["layer1.0.convs.0.weight"].shape == (32, 4, 3, 3)       # cardinality 8
    assert res2next["layer1.0.conv1.weight"].shape == (128, 64, 1, 1)


def test_res2net50_costs_4_255_gmacs_and_4_28_counted_as_timm_counts():
    result = summary(get_model("res2net50_26w_4s"), (3, 224, 224))
    # convolutions and the classifier only, as summary counts (ResNet-50: 4.089)
    assert result.total_macs == 4_255_166_464
    # timm's 4.28 comes from fvcore, which also counts an eval BatchNorm as 2 per element
    # (scale and shift) and the global average pool's inputs
    bn_elements = sum(int(np.prod(r.output_shape)) for r in result.rows if r.type == "BatchNorm2d")
    pooled = 2048 * 7 * 7
    assert round((result.total_macs + 2 * bn_elements + pooled) / 1e9, 2) == 4.28
    assert result.total_params == 25_699_120


@pytest.mark.parametrize("name", ["res2net50_26w_4s", "res2net101_26w_4s", "res2next50"])
def test_res2net_models_build_through_train_config(name):
    assert name in MODEL_NAMES
    model = get_model(name, **TrainConfig(model=name).model_kwargs())
    assert model(np.zeros((2, 3, 16, 16), np.float32)).shape == (2, 10)


def test_zero_init_residual_zeroes_every_bottle2necks_bn3():
    model = get_model("res2net50_26w_4s", width=8, stem="cifar", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottle2neck)]
    assert len(blocks) == 16 and all((b.bn3.weight.data == 0).all() for b in blocks)


def test_the_stage_flag_follows_timms_is_first():
    model = get_model("res2net50_26w_4s", width=8, stem="cifar")
    firsts = [[block.stage_first for block in stage] for stage in model.stages]
    assert firsts == [[True, False, False], [True, False, False, False],
                      [True] + [False] * 5, [True, False, False]]
    assert not hasattr(model.layer1[1], "pool") and model.layer1[0].pool.stride == 1


def test_bottle2neck_refuses_a_plain_twin_and_a_scale_below_2():
    with pytest.raises(ValueError, match="residual=False"):
        get_model("res2net50_26w_4s", residual=False)
    with pytest.raises(ValueError, match="scale"):
        Bottle2neck(16, 4, scale=1)


# ----- Split and Concat ---------------------------------------------------------------------------
def test_split_and_concat_are_each_others_backward_with_unequal_sections(engine):
    rng = np.random.default_rng(0)
    split, concat = Split([1, 3, 2]), Concat()
    x = rng.standard_normal((2, 6, 3, 4))
    parts = split(x)
    assert [p.shape for p in parts] == [(2, 1, 3, 4), (2, 3, 3, 4), (2, 2, 3, 4)]
    np.testing.assert_array_equal(concat(parts), x)
    # a linear map's backward is its adjoint: <split(x), g> = <x, split.backward(g)>
    gs = [rng.standard_normal(p.shape) for p in parts]
    lhs = sum(np.vdot(p, g) for p, g in zip(parts, gs, strict=True))
    assert np.isclose(lhs, np.vdot(x, split.backward(gs)))
    g = rng.standard_normal(x.shape)
    rhs = sum(np.vdot(p, d) for p, d in zip(parts, concat.backward(g), strict=True))
    assert np.isclose(np.vdot(concat(parts), g), rhs)


def test_split_and_concat_name_themselves_on_bad_inputs():
    with pytest.raises(ValueError, match="Split.*expected input"):
        Split([2, 2])(np.zeros((1, 5, 2, 2)))
    with pytest.raises(ValueError, match="Split: sections"):
        Split([2, 0])
    split = Split([2, 2])
    split(np.zeros((1, 4, 2, 2)))
    with pytest.raises(ValueError, match="2 gradients"):
        split.backward([np.zeros((1, 2, 2, 2))])
    with pytest.raises(ValueError, match="Concat.*same N, H and W"):
        Concat()([np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 3, 2))])
    with pytest.raises(RuntimeError, match="before forward"):
        Concat().backward(np.zeros((1, 2, 2, 2)))


RES2NET_CASES = [c for c in BLOCK_CASES if c.name.startswith(("Split", "Concat", "Bottle2neck"))]


@pytest.mark.parametrize("case", RES2NET_CASES, ids=lambda c: c.name)
def test_res2net_layers_match_finite_differences_in_float64(case, engine):
    report = gradcheck(case.make(), *case.inputs(np.random.default_rng(0)), train=case.train)
    assert report.ok(1e-6), str(report)


def test_gradcheck_cases_cover_normal_and_stage_blocks_with_and_without_downsample():
    blocks = [c.make() for c in RES2NET_CASES if c.name.startswith("Bottle2neck")]
    kinds = {(b.stage_first, b.downsample is not None, b.stride) for b in blocks}
    assert {(False, False, 1), (True, True, 2), (True, True, 1)} <= kinds


# ----- PyTorch twin of timm's Bottle2neck -----------------------------------------------------------
class TorchBottle2neck(tnn.Module):
    """timm's Bottle2neck (without SE and dilation), as in timm/models/res2net.py."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, cardinality=1,
                 base_width=26, scale=4):
        super().__init__()
        self.scale = scale
        self.is_first = stride > 1 or downsample is not None
        width = int(math.floor(planes * (base_width / 64.0))) * cardinality
        self.width = width
        self.conv1 = tnn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width * scale)
        self.convs = tnn.ModuleList(
            tnn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False)
            for _ in range(scale - 1))
        self.bns = tnn.ModuleList(tnn.BatchNorm2d(width) for _ in range(scale - 1))
        if self.is_first:
            self.pool = tnn.AvgPool2d(kernel_size=3, stride=stride, padding=1)
        self.conv3 = tnn.Conv2d(width * scale, planes * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        spx = torch.split(out, self.width, 1)
        spo, sp = [], None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            sp = spx[i] if i == 0 or self.is_first else sp + spx[i]
            sp = self.relu(bn(conv(sp)))
            spo.append(sp)
        spo.append(self.pool(spx[-1]) if self.is_first else spx[-1])
        out = self.bn3(self.conv3(torch.cat(spo, 1)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def torch_projection(inplanes, outplanes, stride):
    return tnn.Sequential(tnn.Conv2d(inplanes, outplanes, 1, stride, bias=False),
                          tnn.BatchNorm2d(outplanes))


# (inplanes, planes, stride, projection?, groups, base_width, scale, image size)
BLOCK_PARITY = {
    "normal": (16, 4, 1, False, 1, 32, 3, 5),
    "normal scale 4, identity": (16, 4, 1, False, 1, 48, 4, 4),
    "stage stride 2, projection, odd size": (8, 4, 2, True, 1, 32, 3, 7),
    "stage stride 1, projection": (8, 4, 1, True, 1, 32, 4, 4),
    "res2next groups 2": (16, 4, 2, True, 2, 32, 3, 6),
}




@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(BLOCK_PARITY))
def test_bottle2neck_matches_timms_in_float64(name, train, engine):
    inplanes, planes, stride, projection, groups, base_width, scale, size = BLOCK_PARITY[name]
    downsample = make_shortcut("B", inplanes, planes * 4, stride) if projection else None
    ours = Bottle2neck(inplanes, planes, stride, downsample, groups, base_width, scale=scale)
    ours = ours.to(np.float64).train(train)
    rng = np.random.default_rng(1)
    for m in ours.modules():                    # γ ≠ 1, β ≠ 0, statistics ≠ (0, 1)
        if type(m).__name__ == "BatchNorm2d":
            m.weight.data[:] = rng.uniform(0.5, 1.5, m.num_features)
            m.bias.data[:] = rng.normal(0, 0.3, m.num_features)
            m.running_mean[:] = rng.normal(0, 0.3, m.num_features)
            m.running_var[:] = rng.uniform(0.5, 2.0, m.num_features)
    torch_downsample = torch_projection(inplanes, planes * 4, stride) if projection else None
    theirs = TorchBottle2neck(inplanes, planes, stride, torch_downsample, groups, base_width,
                              scale).double().train(train)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})

    x = rng.standard_normal((3, inplanes, size, size))
    y = ours(x)
    g = rng.standard_normal(y.shape)
    dx = ours.backward(g)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = theirs(x_t)
    y_t.backward(torch.tensor(g))

    assert_close(y, y_t, "output")
    assert_close(dx, x_t.grad, "dL/dx")
    torch_params = dict(theirs.named_parameters())
    assert set(torch_params) == {k for k, _ in ours.named_parameters()}
    for key, p in ours.named_parameters():
        assert_close(p.grad, torch_params[key].grad, f"grad of {key}")
    torch_state = theirs.state_dict()
    for key, value in ours.state_dict().items():            # running statistics too
        assert_close(value, torch_state[key], f"after the forward: {key}")


# ----- a whole small Res2Net against its torch twin: logits, gradients, two SGD steps -------------
class TorchRes2Net(tnn.Module):
    """timm's ResNet(Bottle2neck, layers) with the CIFAR stem (3x3, no max pool)."""

    def __init__(self, layers, width, num_classes, cardinality=1, base_width=26, scale=4):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        self.relu = tnn.ReLU()
        inplanes = width
        for i, blocks in enumerate(layers):
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * 4:
                downsample = torch_projection(inplanes, planes * 4, stride)
            stage = [TorchBottle2neck(inplanes, planes, stride, downsample, cardinality,
                                      base_width, scale)]
            inplanes = planes * 4
            stage += [TorchBottle2neck(inplanes, planes, 1, None, cardinality, base_width, scale)
                      for _ in range(1, blocks)]
            setattr(self, f"layer{i + 1}", tnn.Sequential(*stage))
        self.num_stages = len(layers)
        self.fc = tnn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("kwargs", [
    dict(width_per_group=26, block_args={"scale": 4}),
    dict(groups=4, width_per_group=8, block_args={"scale": 3}),
], ids=["res2net 26w 4s", "res2next 4x8d 3s"])
def test_small_res2net_matches_torch_logits_gradients_and_two_sgd_steps(kwargs, engine):
    layers = [2, 2]
    ours = ResNet(Bottle2neck, layers, num_classes=10, stem="cifar", width=16, **kwargs)
    ours = ours.to(np.float64)
    theirs = TorchRes2Net(layers, 16, 10, kwargs.get("groups", 1), kwargs["width_per_group"],
                          kwargs["block_args"]["scale"]).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 8, 8))
    targets = rng.integers(0, 10, 4)
    assert_two_sgd_steps_match(ours, theirs, x, targets)
