"""engine/fused.py: conv -> BatchNorm -> ReLU in fewer passes gives the layers' numbers, bit for bit.

Each case runs a model forward and backward twice on the fast engine, fused and with the
layers' twins one after the other (fused.ENABLED = False), and compares every output,
gradient and running statistic for exact equality, in train and eval mode, float32 and float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from numpy_resnet import manual_seed, use_engine
from numpy_resnet.blocks import BasicBlock, Bottleneck
from numpy_resnet.diagnostics import GradientRecorder
from numpy_resnet.engine import fused
from numpy_resnet.engine.dispatch import records
from numpy_resnet.kernels import winograd
from numpy_resnet.models import ResNet, cifar_resnet
from numpy_resnet.nn import BatchNorm2d, Conv2d, ReLU

MODELS = {
    "cifar resnet8": lambda: cifar_resnet(8, width=4),
    "bottleneck net, imagenet stem": lambda: ResNet(Bottleneck, [1, 1], num_classes=5, width=4),
    "plain basic block": lambda: BasicBlock(4, 4, residual=False),
}


def randomized(model):
    """BatchNorm with non-trivial γ, β and running statistics, so that eval mode means something."""
    rng = np.random.default_rng(0)
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            m.weight.data = rng.uniform(0.5, 1.5, m.num_features).astype(m.weight.data.dtype)
            m.bias.data = rng.normal(0, 0.3, m.num_features).astype(m.bias.data.dtype)
            m.running_mean = rng.normal(0, 0.3, m.num_features)
            m.running_var = rng.uniform(0.5, 2, m.num_features)
    return model


# the 3x3 stride-1 convs by im2col, or all by Winograd's route (its epilogue is fused.py's)
CONV_ROUTES = {"im2col": 10**6, "winograd": 1}


def run(make, dtype, train: bool, enabled: bool, winograd_from: int = CONV_ROUTES["im2col"]):
    manual_seed(0)
    model = randomized(make()).to(dtype)
    model.train(train)
    rng = np.random.default_rng(1)
    shape = (4, 3, 32, 32) if isinstance(model, ResNet) else (4, 4, 8, 8)
    x = rng.standard_normal(shape).astype(dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fused, "ENABLED", enabled)
        patch.setattr(winograd, "MIN_CHANNELS", winograd_from)
        y = model(x)
        dx = model.backward(rng.standard_normal(y.shape).astype(dtype))
    return [y, dx] + [p.grad for p in model.parameters()] + [b for _, b in model.named_buffers()]


@pytest.mark.parametrize("route", CONV_ROUTES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_fused_layers_equal_the_layers_one_after_the_other_bit_for_bit(make, train, dtype, route):
    got = run(make, dtype, train, True, CONV_ROUTES[route])
    expected = run(make, dtype, train, False, CONV_ROUTES[route])
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_the_fused_path_is_taken_and_leaves_each_layers_record():
    conv, bn, relu = Conv2d(3, 5, 3, padding=1, bias=False), BatchNorm2d(5), ReLU()
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    for train in (True, False):
        for m in (conv, bn, relu):
            m.train(train)
        assert fused.can_fuse(conv, bn, relu)
        z = fused.conv_bn_relu(conv, bn, relu, x)
        assert records[relu] is z and records[conv][1] is x
        y = records[bn][0]                                  # BatchNorm kept its input, conv's output
        np.testing.assert_array_equal(z, relu(bn(y)))


def test_what_cannot_be_fused_runs_layer_by_layer():
    conv, bn, relu = Conv2d(3, 5, 3, padding=1), BatchNorm2d(5), ReLU()
    assert fused.can_fuse(conv, bn, relu)
    assert not fused.can_fuse(conv, BatchNorm2d(4), relu)            # channels do not match
    assert not fused.can_fuse(Conv2d(4, 4, 3, groups=2), BatchNorm2d(4))
    bn.eval()
    assert not fused.can_fuse(conv, bn, relu)                        # modes differ
    bn.train()
    with use_engine("reference"):
        assert not fused.can_fuse(conv, bn, relu)

    class MyReLU(ReLU):
        def forward(self, x):
            return super().forward(x)
    assert not fused.can_fuse(conv, bn, MyReLU())
    hooked = ReLU()
    handle = hooked.register_forward_hook(lambda m, args, y: None)
    assert not fused.can_fuse(conv, bn, hooked)                     # a hook must see the layer run
    handle.remove()
    assert fused.can_fuse(conv, bn, hooked)


def test_a_recorded_model_runs_layer_by_layer_so_every_layer_is_seen():
    model = cifar_resnet(8, width=4)
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with GradientRecorder(model) as recorder:
        assert not fused.can_fuse(model.conv1, model.bn1, model.relu)
        model.backward(np.ones_like(model(x)))
    relus = [name for name, r in recorder.layers.items() if r.get("kind") == "ReLU"]
    assert len(relus) == sum(isinstance(m, ReLU) for m in model.modules())


def test_a_block_folds_its_sum_into_the_last_batchnorm_and_leaves_each_layers_record():
    for block, last in ((BasicBlock(4, 4), "2"), (Bottleneck(16, 4), "3")):
        x = np.random.default_rng(4).standard_normal((2, block.conv1.in_channels, 6, 6))
        x = x.astype(np.float32)
        for train in (True, False):
            block.train(train)
            conv, bn, relu = (getattr(block, name + last) for name in ("conv", "bn", "relu"))
            z = block(x)
            assert records[block] and records[relu] is z     # the block's twin ran
            inner_relu = getattr(block, f"relu{int(last) - 1}")
            assert records[conv][1] is records[inner_relu]   # conv kept its input
            y = records[bn][0]                               # BatchNorm kept conv's output
            expected = relu(bn(y) + x)
            np.testing.assert_array_equal(z, expected)


def test_the_blocks_own_code_runs_where_it_is_overridden_or_watched():
    calls = []

    class CountingBlock(BasicBlock):
        def forward(self, x):
            calls.append("subclass")
            return super().forward(x)

    x = np.random.default_rng(5).standard_normal((2, 4, 6, 6)).astype(np.float32)
    CountingBlock(4, 4)(x)                                   # a subclass's own forward runs
    assert calls == ["subclass"]
    block = BasicBlock(4, 4)
    block(x)
    assert block in records                                  # the twin ran
    block.conv2.register_forward_hook(lambda m, args, y: calls.append("conv2 hook"))
    block(x)                                                 # a hooked layer: the block's own code
    assert calls == ["subclass", "conv2 hook"] and block not in records


def test_a_residual_of_the_wrong_shape_is_an_error_not_a_read_past_its_end():
    conv, bn, relu = Conv2d(3, 5, 3, padding=1, bias=False), BatchNorm2d(5), ReLU()
    x = np.zeros((2, 3, 6, 6), np.float32)
    message = r"gives \(2, 5, 6, 6\), but the residual added to it is \(2, 5, 3, 3\)"
    with pytest.raises(ValueError, match=message):
        fused.conv_bn_relu(conv, bn, relu, x, residual=np.zeros((2, 5, 3, 3), np.float32))
