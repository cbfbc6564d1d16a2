"""Every layer against torch.nn: same weights, same input, same output and same gradients.

Recipe of each test: build our layer, build torch's twin, copy our weights into it through
`state_dict` (the keys are torch's, so `load_state_dict(strict=True)` also checks the names),
run forward on the same input and backward on the same random upstream gradient dy, then
compare the output, dL/dx and every parameter's gradient. PyTorch's autograd is the reference
for our hand-written backward passes.

float64 must agree to ~1e-10, float32 to ~1e-5, both relative to the size of the tensor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_resnet import nn

torch = pytest.importorskip("torch")

TOL = {np.float64: 1e-10, np.float32: 1e-5}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
pytestmark = pytest.mark.usefixtures("engine")     # every test on the reference and the fast engine

DTYPES = [np.float64, np.float32]
EXAMPLES = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**32 - 1)


# ----- helpers --------------------------------------------------------------------------------
def copy_weights_to_torch(ours: nn.Module, theirs: torch.nn.Module) -> None:
    """Our state_dict, key for key, into the torch module (strict: names must match)."""
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})


def assert_matches(ours, theirs, dtype, what: str, scale: float | None = None) -> None:
    """|ours - theirs| <= tol · scale elementwise (plus tol relative), same shape and dtype.

    scale defaults to max(max|theirs|, 1): our inputs and dy are O(1), so an entry that is a
    sum cancelling to almost 0 is judged against the size of what was summed, not against 0.
    """
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, torch {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype}, torch {theirs.dtype}"
    tol = TOL[dtype]
    if scale is None:
        scale = max(float(np.abs(theirs).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * scale, err_msg=what)


def upstream_gradient(shape: tuple, dtype, seed: int) -> np.ndarray:
    """The random dL/dy that both backward passes receive."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def forward_backward_torch(module: torch.nn.Module, x: np.ndarray, dy: np.ndarray):
    """Torch's y and dL/dx for upstream gradient dy (its parameter grads land in .grad)."""
    x_t = torch.tensor(x, requires_grad=True)
    y_t = module(x_t)
    y_t.backward(torch.tensor(dy))
    return y_t, x_t.grad


def check_layer(ours: nn.Module, theirs: torch.nn.Module, x: np.ndarray, dtype, what: str,
                seed: int = 0, dx_scale: float | None = None) -> None:
    """Forward, backward with a random dy, then compare y, dx and each parameter's gradient."""
    y = ours(x)
    dy = upstream_gradient(y.shape, dtype, seed)
    dx = ours.backward(dy)
    y_t, dx_t = forward_backward_torch(theirs, x, dy)
    assert_matches(y, y_t, dtype, f"{what}: output")
    assert_matches(dx, dx_t, dtype, f"{what}: dL/dx", scale=dx_scale)
    torch_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_matches(p.grad, torch_params[name].grad, dtype, f"{what}: dL/d{name}")


def random_input(rng: np.random.Generator, shape: tuple, dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


# ----- Conv2d ---------------------------------------------------------------------------------
@st.composite
def conv_configs(draw) -> dict:
    groups = draw(st.sampled_from([1, 2, 4, "depthwise"]))
    if groups == "depthwise":
        in_channels = draw(st.integers(1, 6))
        groups = in_channels
        out_channels = in_channels * draw(st.integers(1, 2))
    else:
        in_channels = groups * draw(st.integers(1, 3))
        out_channels = groups * draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 3, 7]))
    padding = draw(st.integers(0, 3))
    smallest = max(1, k - 2 * padding)
    return dict(in_channels=in_channels, out_channels=out_channels, kernel_size=k,
                stride=draw(st.integers(1, 3)), padding=padding, groups=groups,
                bias=draw(st.booleans()), N=draw(st.integers(1, 3)),
                H=draw(st.integers(smallest, 11)), W=draw(st.integers(smallest, 11)),
                seed=draw(seeds))


def run_conv_parity(c: dict, dtype) -> None:
    args = (c["in_channels"], c["out_channels"], c["kernel_size"])
    kwargs = dict(stride=c["stride"], padding=c["padding"], groups=c["groups"], bias=c["bias"])
    ours = nn.Conv2d(*args, **kwargs, dtype=dtype)
    theirs = torch.nn.Conv2d(*args, **kwargs, dtype=TORCH_DTYPE[dtype])
    copy_weights_to_torch(ours, theirs)
    x = random_input(np.random.default_rng(c["seed"]), (c["N"], c["in_channels"], c["H"], c["W"]),
                     dtype)
    check_layer(ours, theirs, x, dtype, f"Conv2d {c}", seed=c["seed"])


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(c=conv_configs())
def test_conv2d_forward_and_backward_match_torch(dtype, c):
    run_conv_parity(c, dtype)


@pytest.mark.parametrize("groups", [2, 4, 8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_matches_torch_with_groups(dtype, groups):
    run_conv_parity(dict(in_channels=8, out_channels=16, kernel_size=3, stride=2, padding=1,
                         groups=groups, bias=True, N=2, H=9, W=6, seed=groups), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_matches_torch_for_the_resnet_stem_on_batch_1(dtype):
    """conv1 of every ImageNet ResNet: 7x7, stride 2, padding 3, no bias; one non-square image."""
    run_conv_parity(dict(in_channels=3, out_channels=8, kernel_size=7, stride=2, padding=3,
                         groups=1, bias=False, N=1, H=19, W=14, seed=7), dtype)


# ----- BatchNorm2d ----------------------------------------------------------------------------
def batchnorm_pair(C: int, dtype, momentum, rng) -> tuple[nn.BatchNorm2d, torch.nn.BatchNorm2d]:
    """Ours with random γ, β (not 1 and 0, so that their gradients are really tested), and torch's."""
    ours = nn.BatchNorm2d(C, momentum=momentum, dtype=dtype)
    ours.weight.data = rng.uniform(0.5, 2.0, C).astype(dtype)
    ours.bias.data = rng.standard_normal(C).astype(dtype)
    theirs = torch.nn.BatchNorm2d(C, momentum=momentum, dtype=TORCH_DTYPE[dtype])
    copy_weights_to_torch(ours, theirs)
    return ours, theirs


def batchnorm_input(rng, shape, dtype) -> np.ndarray:
    """Per-channel offset and scale, so that μ and σ² are far from 0 and 1."""
    C = shape[1]
    shift = rng.uniform(-3, 3, (1, C, 1, 1))
    scale = rng.uniform(0.5, 3, (1, C, 1, 1))
    return (shift + scale * rng.standard_normal(shape)).astype(dtype)


bn_shapes = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 6),
                      st.integers(1, 6)).filter(lambda s: s[0] * s[2] * s[3] >= 2)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=bn_shapes, seed=seeds)
def test_batchnorm2d_train_forward_and_backward_match_torch(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    ours, theirs = batchnorm_pair(shape[1], dtype, 0.1, rng)
    x = batchnorm_input(rng, shape, dtype)
    # dx = γ/σ · (dy - mean(dy) - x̂·mean(dy x̂)) cancels almost to 0 when M = N·H·W is small
    # (M = 2: x̂ = ±1 and dx ≈ 0); rounding is relative to the terms, γ/σ · dy, not to dx
    gamma_over_sigma = ours.weight.data / np.sqrt(x.var(axis=(0, 2, 3)) + ours.eps)
    dy_size = np.abs(upstream_gradient(x.shape, dtype, seed)).max()
    dx_scale = max(float(np.abs(gamma_over_sigma).max() * dy_size), 1.0)
    check_layer(ours, theirs, x, dtype, f"BatchNorm2d train {shape}", seed=seed, dx_scale=dx_scale)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm2d_running_stats_match_torch_after_3_forwards(dtype, momentum):
    """momentum=0.1 is an exponential average; None is the plain average over batches."""
    rng = np.random.default_rng(3)
    ours, theirs = batchnorm_pair(5, dtype, momentum, rng)
    for _ in range(3):
        x = batchnorm_input(rng, (4, 5, 3, 2), dtype)        # M = 24: unbiased var ≠ biased
        ours(x)
        theirs(torch.tensor(x))
    torch_state = theirs.state_dict()
    for name in ("running_mean", "running_var"):
        assert_matches(getattr(ours, name), torch_state[name], dtype,
                       f"BatchNorm2d(momentum={momentum}) {name} after 3 forwards")
    assert int(ours.num_batches_tracked) == int(torch_state["num_batches_tracked"]) == 3


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=bn_shapes, seed=seeds)
def test_batchnorm2d_eval_uses_running_stats_like_torch(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    ours, _ = batchnorm_pair(shape[1], dtype, 0.1, rng)
    ours.running_mean = rng.standard_normal(shape[1]).astype(dtype)
    ours.running_var = rng.uniform(0.2, 4.0, shape[1]).astype(dtype)
    theirs = torch.nn.BatchNorm2d(shape[1], dtype=TORCH_DTYPE[dtype])
    copy_weights_to_torch(ours, theirs)                 # now with the running statistics
    ours.eval()
    theirs.eval()
    x = batchnorm_input(rng, shape, dtype)
    check_layer(ours, theirs, x, dtype, f"BatchNorm2d eval {shape}", seed=seed)
    assert int(ours.num_batches_tracked) == 0, "eval must not count batches"


# ----- ReLU -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_forward_and_backward_match_torch_including_zero_inputs(dtype):
    """At x = 0 both take the derivative to be 0."""
    rng = np.random.default_rng(0)
    x = random_input(rng, (2, 3, 5, 4), dtype)
    x[0, 0, 0, :] = 0.0
    check_layer(nn.ReLU(), torch.nn.ReLU(), x, dtype, "ReLU")


# ----- pooling --------------------------------------------------------------------------------
@st.composite
def pool_configs(draw) -> dict:
    k = draw(st.integers(1, 5))
    padding = draw(st.integers(0, k // 2))          # torch: padding at most half the kernel
    smallest = max(1, k - 2 * padding)
    stride = draw(st.one_of(st.none(), st.integers(1, 3)))     # None: stride = kernel_size
    return dict(kernel_size=k, stride=stride, padding=padding,
                ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
                shape=(draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                       draw(st.integers(smallest, 11)), draw(st.integers(smallest, 11))),
                seed=draw(seeds))


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(c=pool_configs())
def test_maxpool2d_forward_and_backward_match_torch(dtype, c):
    args = (c["kernel_size"], c["stride"], c["padding"])
    x = random_input(np.random.default_rng(c["seed"]), c["shape"], dtype)
    check_layer(nn.MaxPool2d(*args), torch.nn.MaxPool2d(*args), x, dtype, f"MaxPool2d {c}",
                seed=c["seed"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_backward_matches_torch_when_a_window_has_ties(dtype):
    """With equal values the gradient goes to the first maximum of the window, as in torch."""
    x = np.random.default_rng(1).integers(0, 3, (2, 2, 7, 6)).astype(dtype)
    check_layer(nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1), x, dtype, "MaxPool2d ties")


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(c=pool_configs())
def test_avgpool2d_forward_and_backward_match_torch(dtype, c):
    args = (c["kernel_size"], c["stride"], c["padding"])
    kwargs = dict(ceil_mode=c["ceil_mode"], count_include_pad=c["count_include_pad"])
    x = random_input(np.random.default_rng(c["seed"]), c["shape"], dtype)
    check_layer(nn.AvgPool2d(*args, **kwargs), torch.nn.AvgPool2d(*args, **kwargs), x, dtype,
                f"AvgPool2d {c}", seed=c["seed"])


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_avgpool2d_with_ceil_mode_divides_the_last_window_like_torch(dtype, count_include_pad):
    """6x5 image, k=3, s=2, p=1: ceil_mode adds a last window that overhangs the padding."""
    x = random_input(np.random.default_rng(2), (1, 2, 6, 5), dtype)
    kwargs = dict(ceil_mode=True, count_include_pad=count_include_pad)
    check_layer(nn.AvgPool2d(3, 2, 1, **kwargs), torch.nn.AvgPool2d(3, 2, 1, **kwargs), x,
                dtype, f"AvgPool2d ceil_mode {kwargs}")


@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 4, 1, 1), (3, 2, 1, 6)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avgpool2d_forward_and_backward_match_torch(dtype, shape):
    x = random_input(np.random.default_rng(0), shape, dtype)
    check_layer(nn.AdaptiveAvgPool2d(1), torch.nn.AdaptiveAvgPool2d(1), x, dtype,
                f"AdaptiveAvgPool2d(1) {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_stem_conv_bn_relu_maxpool_matches_torch(dtype):
    """A ResNet stem in a Sequential: key names ("0.weight", "1.running_mean") and the
    reversed walk of backward through four layers."""
    ours = nn.Sequential(nn.Conv2d(3, 4, 7, stride=2, padding=3, bias=False, dtype=dtype),
                         nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 7, stride=2, padding=3, bias=False, dtype=TORCH_DTYPE[dtype]),
        torch.nn.BatchNorm2d(4, dtype=TORCH_DTYPE[dtype]), torch.nn.ReLU(),
        torch.nn.MaxPool2d(3, 2, 1))
    rng = np.random.default_rng(5)
    ours[1].weight.data = rng.uniform(0.5, 2.0, 4).astype(dtype)
    ours[1].bias.data = rng.standard_normal(4).astype(dtype)
    copy_weights_to_torch(ours, theirs)
    x = random_input(rng, (2, 3, 21, 17), dtype)
    check_layer(ours, theirs, x, dtype, "Sequential stem")
    torch_state = theirs.state_dict()
    for name in ("1.running_mean", "1.running_var"):
        assert_matches(ours.state_dict()[name], torch_state[name], dtype, f"stem {name}")


# ----- Linear, Flatten, Dropout ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(N=st.integers(1, 5), in_features=st.integers(1, 20), out_features=st.integers(1, 20),
       bias=st.booleans(), seed=seeds)
def test_linear_forward_and_backward_match_torch(dtype, N, in_features, out_features, bias, seed):
    ours = nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
    theirs = torch.nn.Linear(in_features, out_features, bias=bias, dtype=TORCH_DTYPE[dtype])
    copy_weights_to_torch(ours, theirs)
    x = random_input(np.random.default_rng(seed), (N, in_features), dtype)
    check_layer(ours, theirs, x, dtype, f"Linear({in_features}, {out_features}, bias={bias})",
                seed=seed)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_forward_and_backward_match_torch(dtype):
    x = random_input(np.random.default_rng(0), (3, 4, 2, 5), dtype)
    check_layer(nn.Flatten(), torch.nn.Flatten(), x, dtype, "Flatten")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_with_p_0_in_train_mode_is_the_identity_like_torch(dtype):
    x = random_input(np.random.default_rng(0), (4, 6), dtype)
    check_layer(nn.Dropout(0.0).train(), torch.nn.Dropout(0.0).train(), x, dtype,
                "Dropout(p=0) train")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_in_eval_mode_is_the_identity_like_torch(dtype):
    x = random_input(np.random.default_rng(0), (4, 6), dtype)
    check_layer(nn.Dropout(0.5).eval(), torch.nn.Dropout(0.5).eval(), x, dtype,
                "Dropout(p=0.5) eval")


def test_dropout_in_train_mode_scales_kept_values_by_1_over_1_minus_p_like_torch():
    """Masks are random and differ, but each kept value is x / (1 - p) in both."""
    p = 0.25
    x = np.random.default_rng(0).uniform(1, 2, (50, 40))       # no zeros: kept ⇔ y ≠ 0
    for y in (nn.Dropout(p).train()(x), torch.nn.Dropout(p).train()(torch.tensor(x)).numpy()):
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-12)
        assert 0.6 < kept.mean() < 0.9, f"kept fraction {kept.mean():.3f}, expected about 0.75"


# ----- CrossEntropyLoss -----------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_loss_and_dlogits_match_torch(dtype, label_smoothing, reduction):
    rng = np.random.default_rng(0)
    N, K = 7, 10
    logits = (3 * rng.standard_normal((N, K))).astype(dtype)
    targets = rng.integers(0, K, N)
    ours = nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction=reduction)
    loss = ours(logits, targets)
    dlogits = ours.backward()

    theirs = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction=reduction)
    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = theirs(logits_t, torch.tensor(targets))
    loss_t.backward()
    what = f"CrossEntropyLoss(label_smoothing={label_smoothing}, reduction={reduction!r})"
    assert_matches(np.asarray(loss, dtype=dtype), loss_t, dtype, f"{what}: loss")
    assert_matches(dlogits, logits_t.grad, dtype, f"{what}: dL/dlogits")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_loss_matches_torch_on_huge_logits(dtype):
    """logsumexp must be computed stably: exp(1000) overflows, the loss does not."""
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 990.0, 1000.0]], dtype=dtype)
    targets = np.array([0, 1])
    ours = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss = ours(logits, targets)
    dlogits = ours.backward()
    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits_t, torch.tensor(targets))
    loss_t.backward()
    assert_matches(np.asarray(loss, dtype=dtype), loss_t, dtype, "CrossEntropyLoss huge: loss")
    assert_matches(dlogits, logits_t.grad, dtype, "CrossEntropyLoss huge: dL/dlogits")


# ----- initialisation -------------------------------------------------------------------------
def test_kaiming_normal_fan_out_relu_has_std_sqrt_2_over_fan_out():
    """torchvision's ResNet init: std = √2 / √fan_out with fan_out = C_out · k · k."""
    shape = (256, 128, 3, 3)
    fan_out = 256 * 3 * 3
    expected_std = math.sqrt(2.0 / fan_out)
    ours = nn.Parameter(np.zeros(shape, np.float64))
    nn.init.kaiming_normal_(ours, mode="fan_out", nonlinearity="relu")
    theirs = torch.empty(shape, dtype=torch.float64)
    torch.nn.init.kaiming_normal_(theirs, mode="fan_out", nonlinearity="relu")
    # 295k samples: the sample std is within ~0.2% of the true one, the mean within ~0.002 std
    for name, w in (("ours", ours.data), ("torch", theirs.numpy())):
        assert abs(w.std() / expected_std - 1) < 0.01, \
            f"{name}: std {w.std():.5f}, expected {expected_std:.5f}"
        assert abs(w.mean()) < 0.01 * expected_std, f"{name}: mean {w.mean():.2e}, expected 0"


@pytest.mark.parametrize("build", [
    pytest.param(lambda lib: lib.Conv2d(64, 128, 3), id="Conv2d(64,128,3)"),
    pytest.param(lambda lib: lib.Conv2d(64, 64, 3, groups=64), id="Conv2d depthwise"),
    pytest.param(lambda lib: lib.Conv2d(32, 64, 1, groups=4), id="Conv2d(32,64,1,groups=4)"),
    pytest.param(lambda lib: lib.Linear(512, 1000), id="Linear(512,1000)"),
])
def test_default_conv2d_and_linear_init_bounds_match_torch(build):
    """torch's default is kaiming_uniform_(a=√5): W, b ~ U(±1/√fan_in), fan_in = C_in/groups·k·k."""
    ours, theirs = build(nn), build(torch.nn)
    w = theirs.weight
    fan_in = w.shape[1] * int(np.prod(w.shape[2:]))
    bound = 1.0 / math.sqrt(fan_in)
    for name in ("weight", "bias"):
        ours_w = getattr(ours, name).data
        theirs_w = getattr(theirs, name).detach().numpy()
        for who, values in (("ours", ours_w), ("torch", theirs_w)):
            assert np.abs(values).max() <= bound, f"{who} {name}: max |w| above 1/√{fan_in}"
        assert np.abs(ours_w).max() > 0.8 * bound, f"ours {name}: does not reach the bound"
        if ours_w.size > 10_000:                     # U(±b) has std b/√3
            assert abs(ours_w.std() / (bound / math.sqrt(3)) - 1) < 0.02, f"ours {name}: std"
