"""The Module contract: registration, modes, dtype, state_dict, and clear errors."""

import numpy as np
import pytest

from numpy_resnet import nn


def small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_parameters_and_buffers_are_registered_in_pytorch_key_order():
    keys = list(small_net().state_dict())
    assert keys == ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                    "1.num_batches_tracked", "5.weight", "5.bias"]


def test_named_modules_and_children_walk_the_tree():
    net = small_net()
    assert [name for name, _ in net.named_modules()] == ["", "0", "1", "2", "3", "4", "5"]
    assert len(list(net.children())) == 6
    assert len(list(net.parameters())) == 5


def test_train_and_eval_set_every_module():
    net = small_net().eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_backward_accumulates_and_zero_grad_resets():
    net = small_net()
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    dy = np.ones((2, 2), np.float32)
    net(x)
    net.backward(dy)
    once = net[0].weight.grad.copy()
    net(x)
    net.backward(dy)
    np.testing.assert_allclose(net[0].weight.grad, 2 * once, rtol=1e-5)
    net.zero_grad()
    assert all(not p.grad.any() for p in net.parameters())


def test_to_float64_casts_parameters_grads_and_float_buffers_only():
    net = small_net().to(np.float64)
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert net[1].running_mean.dtype == np.float64
    assert net[1].num_batches_tracked.dtype == np.int64


def test_float32_is_the_default_dtype():
    assert all(p.data.dtype == np.float32 for p in small_net().parameters())


def test_state_dict_round_trip_copies_values():
    a, b = small_net(), small_net()
    b.load_state_dict(a.state_dict())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        np.testing.assert_array_equal(va, vb)
    state = a.state_dict()
    state["0.weight"][...] = 7
    assert not (a[0].weight.data == 7).any(), "state_dict must hand out copies"


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    net = small_net()
    before = net.state_dict()
    bad = net.state_dict()
    del bad["1.running_var"]
    bad["extra.weight"] = np.zeros(3)
    bad["5.weight"] = np.zeros((3, 4))
    bad["0.weight"] = np.full_like(bad["0.weight"], 5.0)
    with pytest.raises(ValueError) as err:
        net.load_state_dict(bad)
    message = str(err.value)
    assert "1.running_var" in message and "extra.weight" in message and "5.weight" in message
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_non_strict_reports_missing_and_unexpected():
    net = small_net()
    state = net.state_dict()
    del state["5.bias"]
    state["junk"] = np.zeros(1)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == ["5.bias"] and unexpected == ["junk"]


def test_load_state_dict_keeps_the_module_dtype():
    net = small_net().to(np.float64)
    net.load_state_dict(small_net().state_dict())
    assert net[0].weight.data.dtype == np.float64


# ----- load_state_dict: bad state dicts are refused whole, by key --------------------------
def trained_net(seed: int):
    """small_net with values unlike a fresh one's, so that a half-load would show."""
    net = small_net()
    rng = np.random.default_rng(seed)
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
        p.grad[...] = rng.standard_normal(p.grad.shape)
    net[1].running_var[...] = rng.uniform(1, 2, 4)
    net[1].num_batches_tracked = np.array(seed + 10)
    return net


def snapshot(net) -> dict:
    """Every parameter, gradient and buffer as (dtype, shape, bytes)."""
    arrays = {f"{key} data": p.data for key, p in net.named_parameters()}
    arrays |= {f"{key} grad": p.grad for key, p in net.named_parameters()}
    arrays |= dict(net.named_buffers())
    return {key: (a.dtype, a.shape, a.tobytes()) for key, a in arrays.items()}


def ragged():
    return [[1.0], [2.0, 3.0]]


# (id, key, bad value, words the message must hold). Every other key of the state dict holds
# another model's values, so a load that wrote anything before failing would be seen.
BAD_VALUES = [
    ("words", "5.bias", np.array(["one", "two"]), "strings"),
    ("numeric strings", "5.bias", np.array(["1.5", "2"]), "strings"),
    ("bytes", "5.bias", np.array([b"1", b"2"]), "bytes"),
    ("booleans", "5.bias", np.array([True, False]), "booleans"),
    ("complex", "5.bias", np.array([1 + 2j, 0]), "complex numbers"),
    ("complex with zero imaginary part", "5.bias", np.array([1 + 0j, 2 + 0j]), "complex numbers"),
    ("1e60 into float32", "5.bias", np.array([1e60, 0.0]), "inf"),
    ("-1e60 into float32", "0.weight", np.full((4, 3, 3, 3), -1e60), "-inf"),
    ("3.7 into num_batches_tracked", "1.num_batches_tracked", np.array(3.7), "3.7"),
    ("nan into num_batches_tracked", "1.num_batches_tracked", np.array(np.nan), "nan"),
    ("inf into num_batches_tracked", "1.num_batches_tracked", np.array(np.inf), "inf"),
    ("1e30 into int64", "1.num_batches_tracked", np.array(1e30), "1e+30"),
    ("uint64 beyond int64", "1.num_batches_tracked", np.array(2**64 - 1, np.uint64), "18446744073709551615"),
    ("a bool into num_batches_tracked", "1.num_batches_tracked", np.array(True), "booleans"),
    ("an object array", "5.bias", np.array([{"a": 1}, 2], dtype=object), "Python objects"),
    ("None", "1.num_batches_tracked", None, "Python objects"),
    ("a dict", "1.num_batches_tracked", {"count": 3}, "Python objects"),
    ("a ragged list", "5.bias", ragged(), "not an array"),
    ("dates", "5.bias", np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"), "dates"),
    ("a structured record", "5.bias", np.zeros(2, dtype=[("x", "f4")]), "raw records"),
    ("a wrong shape", "5.weight", np.zeros((3, 4)), "shape mismatch"),
    ("a transposed weight", "5.weight", np.zeros((4, 2)), "expected (2, 4), got (4, 2)"),
    ("a scalar for a vector", "1.running_mean", np.array(1.0), "shape mismatch"),
    ("a vector for a scalar", "1.num_batches_tracked", np.array([5]), "shape mismatch"),
    ("strings in the first key", "0.weight", np.full((4, 3, 3, 3), "x"), "strings"),
]


@pytest.mark.parametrize("key, value, words", [row[1:] for row in BAD_VALUES],
                         ids=[row[0] for row in BAD_VALUES])
def test_load_state_dict_refuses_a_bad_value_by_key_and_changes_nothing(key, value, words):
    net = trained_net(0)
    before = snapshot(net)
    state = trained_net(1).state_dict()
    state[key] = value
    with pytest.raises(ValueError) as err:
        net.load_state_dict(state)
    message = str(err.value)
    assert f"{key!r}" in message and words in message, message
    assert "\n" not in message and message.startswith("Sequential.load_state_dict: ")
    assert snapshot(net) == before


@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_refuses_bad_values_even_when_not_strict(strict):
    net = trained_net(0)
    before = snapshot(net)
    state = trained_net(1).state_dict()
    state["1.num_batches_tracked"] = np.array(3.7)
    with pytest.raises(ValueError, match="'1.num_batches_tracked' holds 3.7, which would become 3"):
        net.load_state_dict(state, strict=strict)
    assert snapshot(net) == before


def test_load_state_dict_lists_every_kind_of_problem_in_one_line():
    net = trained_net(0)
    before = snapshot(net)
    state = trained_net(1).state_dict()
    del state["1.weight"]
    state["extra"] = np.zeros(1)
    state["0.weight"] = np.zeros((1, 1))
    state["5.bias"] = np.array(["a", "b"])
    with pytest.raises(ValueError) as err:
        net.load_state_dict(state)
    assert str(err.value) == (
        "Sequential.load_state_dict: missing keys: '1.weight'; unexpected keys: 'extra'; "
        "'0.weight' shape mismatch: expected (4, 3, 3, 3), got (1, 1); "
        "'5.bias' holds strings (<U1), expected real numbers for float32; nothing was loaded")
    assert snapshot(net) == before


def test_load_state_dict_shortens_long_lists_and_says_how_many_more():
    net = small_net()
    with pytest.raises(ValueError) as err:
        net.load_state_dict({f"other.{i}": np.zeros(1) for i in range(9)})
    message = str(err.value)
    assert "'0.weight', '1.weight', '1.bias', '1.running_mean', '1.running_var' and 2 more" in message
    assert "'other.4' and 4 more" in message


def test_load_state_dict_accepts_rounding_and_exact_integers():
    net = small_net()
    state = trained_net(1).state_dict()
    state["0.weight"] = state["0.weight"].astype(np.float64) + 1e-12     # rounds in float32
    state["5.bias"] = np.array([3, -4], dtype=np.int8)
    state["1.num_batches_tracked"] = np.array(12.0)                      # a whole number
    state["1.running_mean"] = np.array([np.nan, np.inf, 0, 1], np.float32)  # as PyTorch allows
    assert net.load_state_dict(state) == ([], [])
    np.testing.assert_array_equal(net[0].weight.data, state["0.weight"].astype(np.float32))
    np.testing.assert_array_equal(net[5].bias.data, [3.0, -4.0])
    assert net[1].num_batches_tracked == 12 and net[1].num_batches_tracked.dtype == np.int64
    assert net[5].bias.data.dtype == np.float32
    np.testing.assert_array_equal(net[1].running_mean, [np.nan, np.inf, 0, 1])


@pytest.mark.parametrize("strict", [True, False])
def test_a_state_dict_without_num_batches_tracked_loads_and_leaves_the_count(strict):
    """Older torchvision saves have no num_batches_tracked; PyTorch loads them strictly."""
    net = trained_net(0)
    source = trained_net(1)
    state = source.state_dict()
    del state["1.num_batches_tracked"]
    assert net.load_state_dict(state, strict=strict) == ([], [])
    assert net[1].num_batches_tracked == 10                               # trained_net(0)'s
    np.testing.assert_array_equal(net[1].running_var, source[1].running_var)
    np.testing.assert_array_equal(net[5].weight.data, source[5].weight.data)


def test_load_state_dict_writes_copies_it_does_not_keep_the_callers_arrays():
    net = small_net()
    state = trained_net(1).state_dict()
    net.load_state_dict(state)
    state["0.weight"][...] = 7
    state["1.running_mean"][...] = 7
    assert not (net[0].weight.data == 7).any() and not (net[1].running_mean == 7).any()


@pytest.mark.parametrize("layer", [nn.Conv2d(3, 4, 3), nn.BatchNorm2d(3), nn.ReLU(),
                                   nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1),
                                   nn.Linear(3, 2), nn.Flatten(), nn.Dropout(0.5)])
def test_backward_before_forward_raises_a_clear_error(layer):
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        layer.backward(np.zeros((1, 3, 2, 2), np.float32))


def test_conv_rejects_wrong_channel_count_naming_layer_and_shapes():
    conv = nn.Conv2d(3, 16, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 16.*expected input \(N, 3, H, W\).*\(8, 4, 32, 32\)"):
        conv(np.zeros((8, 4, 32, 32), np.float32))


def test_conv_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"Conv2d.*\(N, C, H, W\).*\(3, 32, 32\)"):
        nn.Conv2d(3, 4, 3)(np.zeros((3, 32, 32), np.float32))


def test_layers_reject_a_dtype_that_differs_from_their_parameters():
    with pytest.raises(ValueError, match="expected dtype float32, got float64"):
        nn.Conv2d(3, 4, 3)(np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="floating-point"):
        nn.ReLU()(np.zeros((1, 3, 8, 8), np.uint8))


def test_batchnorm_rejects_wrong_channels_and_single_value_batches():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4.*\(N, 4, H, W\)"):
        nn.BatchNorm2d(4)(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.BatchNorm2d(4)(np.zeros((1, 4, 1, 1), np.float32))


def test_linear_rejects_wrong_features():
    with pytest.raises(ValueError, match=r"Linear.*\(N, 5\).*\(2, 4\)"):
        nn.Linear(5, 3)(np.zeros((2, 4), np.float32))


def test_loss_rejects_bad_targets():
    crit = nn.CrossEntropyLoss()
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="targets must be in 0..3"):
        crit(logits, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="integer targets"):
        crit(logits, np.array([0.0, 1.0, 2.0]))


def test_conv_rejects_groups_that_do_not_divide_channels():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)


def test_loss_backward_uses_the_upstream_scalar():
    crit = nn.CrossEntropyLoss()
    logits = np.random.default_rng(1).standard_normal((4, 3))
    crit(logits, np.array([0, 1, 2, 0]))
    np.testing.assert_allclose(crit.backward(3.0), 3.0 * crit.backward())


# ----- hooks, as in PyTorch --------------------------------------------------------------------
def test_forward_hooks_see_and_may_replace_the_input_and_the_output(engine):
    relu = nn.ReLU()
    seen = []
    pre = relu.register_forward_pre_hook(lambda m, args: (args[0] - 1,))
    post = relu.register_forward_hook(lambda m, args, y: seen.append((m, args[0], y)) or y * 2)
    x = np.array([[0.5, 2.0, 3.0]])
    np.testing.assert_array_equal(relu(x), [[0.0, 2.0, 4.0]])
    assert seen[0][0] is relu
    np.testing.assert_array_equal(seen[0][1], x - 1)                # the hook saw the new input
    pre.remove()
    post.remove()
    np.testing.assert_array_equal(relu(x), [[0.5, 2.0, 3.0]])
    assert len(seen) == 1 and not relu.has_hooks()


def test_a_full_backward_hook_gets_grad_input_and_grad_output_and_may_replace_grad_input(engine):
    bn = nn.BatchNorm2d(2).to(np.float64)
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4))
    y = bn(x)
    dy = np.cos(y)
    expected = bn.backward(dy)
    got = []
    bn.register_full_backward_hook(lambda m, gi, go: got.append((gi, go)) or (gi[0] * 0,))
    bn(x)
    dx = bn.backward(dy)
    (grad_input, grad_output), = got
    assert isinstance(grad_input, tuple) and isinstance(grad_output, tuple)
    np.testing.assert_allclose(grad_input[0], expected, rtol=1e-12)
    assert grad_output[0] is dy and not dx.any()


def test_a_backward_pre_hook_may_replace_grad_output(engine):
    relu = nn.ReLU()
    x = np.array([[1.0, -1.0, 2.0]])
    relu(x)
    relu.register_full_backward_pre_hook(lambda m, go: (go[0] * 10,))
    np.testing.assert_array_equal(relu.backward(np.ones_like(x)), [[10.0, 0.0, 10.0]])


def test_hooks_run_once_when_a_subclass_calls_the_parents_methods(engine):
    class Doubled(nn.ReLU):
        def forward(self, x):
            return super().forward(x) * 2

        def backward(self, dy):
            return super().backward(dy) * 2

    layer, calls = Doubled(), []
    layer.register_forward_hook(lambda m, args, y: calls.append("forward"))
    layer.register_full_backward_hook(lambda m, gi, go: calls.append("backward"))
    y = layer(np.array([1.0, -2.0]))
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), [2.0, 0.0])
    assert calls == ["forward", "backward"]


def test_a_handle_removes_its_hook_on_leaving_a_with_block():
    conv = nn.Conv2d(1, 1, 1)
    with conv.register_forward_hook(lambda m, args, y: None):
        assert conv.has_hooks()
    assert not conv.has_hooks()


def test_the_deep_dive_snippet_prints_the_gradient_norm_at_every_child(engine, capsys):
    from numpy_resnet.models import cifar_resnet
    model = cifar_resnet(8, width=4)
    for layer in model.children():
        layer.register_full_backward_hook(lambda m, gi, go: print(type(m).__name__, np.linalg.norm(go[0])))
    logits = model(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    model.backward(np.ones_like(logits))
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == [type(m).__name__ for m in reversed(list(model.children()))]
