"""Bad inputs for every layer, on both engines: each call works, or raises a clear error.

For each layer of nn/, hypothesis draws the constructor's arguments, then an input, then an
upstream gradient, mixing good values with bad ones: 0 and negative sizes, floats where ints
belong (2.7, and 3.0 too, as PyTorch), bools, strings, None, unequal pairs, eps 0, a momentum
or probability outside [0, 1], NaN, float16, integer, bool and complex arrays, empty arrays,
a wrong rank, a channel too many, kernels larger than the padded image, one value per channel
for BatchNorm, targets out of range, gradients of the wrong shape or dtype, lists for arrays,
and good arrays in Fortran order or strided. Each call either

  works, when the rules restated below call it valid: the output has the shape they give and,
      on the fast engine, the same values as the layer's own code (the reference engine); or
  raises ValueError or TypeError, one line that names the layer, when they call it invalid.

So a validation removed from a layer fails here (the call is accepted, or fails with a
ZeroDivisionError, an IndexError or deep inside a kernel), and so does an error that names no
layer. The rules follow PyTorch where it is clear (a size is an int, given as an int).

How many cases: EXAMPLES (500) hypothesis examples for each of the 11 layers on each of the
2 engines, 11,000 drawn cases, each a constructor call followed, when it is valid, by a forward
and, when that is valid, a backward; plus the named cases from issue 18 (NAMED_CASES, 24, on
both engines: 48), 8 dtypes given to Module.to, 1 dtype advice and 10 backward-before-forward
calls on both engines (20): 11,077 in all. `pytest --hypothesis-show-statistics` shows how many
constructors, forwards and backwards each test's examples reached, and how many were refused.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from numpy_resnet import nn, use_engine

EXAMPLES = 500
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ----- the rules, restated ------------------------------------------------------------------------
def an_int(value, minimum=None) -> bool:
    """An int (Python's or NumPy's, not a bool) >= minimum."""
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and (minimum is None or value >= minimum))


def side(value, minimum=1):
    """k or (k, k) -> k; None when it is not a valid square window side."""
    if isinstance(value, (tuple, list)):
        ok = len(value) == 2 and all(an_int(v, minimum) for v in value) and value[0] == value[1]
        return int(value[0]) if ok else None
    return int(value) if an_int(value, minimum) else None


def a_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def a_flag(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def a_dtype(value):
    """float32 or float64 as np.dtype; None for anything else."""
    if value is None:
        return None
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):
        return None
    return dtype if dtype in FLOATS else None


def an_array(x, ndim=None, channels=None, dtype=None) -> bool:
    """A non-empty float32/float64 ndarray of that rank, channel count (axis 1) and dtype."""
    return (isinstance(x, np.ndarray) and x.dtype in FLOATS and x.size > 0
            and (ndim is None or x.ndim == ndim)
            and (channels is None or x.shape[1] == channels)
            and (dtype is None or x.dtype == dtype))


def pooled(size: int, k: int, s: int, p: int, ceil_mode: bool = False) -> int:
    """PyTorch's pooling output size: a last window must start inside the input or left padding."""
    if not ceil_mode:
        return (size + 2 * p - k) // s + 1
    out = -(-(size + 2 * p - k) // s) + 1
    return out - 1 if (out - 1) * s >= size + p else out


# ----- good values and bad ones -------------------------------------------------------------------
JUNK = [None, "3", 2.7, 3.0, np.float32(2.0), float("nan"), float("inf"), True, False, [2], (2,),
        (2, 3), (3, 3, 3), ("3", "3"), (2.0, 2.0), object()]
BAD_INT = st.one_of(st.integers(-3, 0), st.sampled_from(JUNK))


def ints(lo: int, hi: int):
    """A valid int, as Python's or NumPy's."""
    return st.one_of(st.integers(lo, hi), st.integers(lo, hi).map(np.int64))


def squares(lo: int, hi: int):
    """k, (k, k) or [k, k]."""
    return st.one_of(ints(lo, hi), ints(lo, hi).map(lambda k: (k, k)), ints(lo, hi).map(lambda k: [k, k]))


FLAGS = st.sampled_from([True, False, np.True_, np.False_])
BAD_FLAGS = st.sampled_from([0, 1, None, "yes", 1.0, [True]])
DTYPES = st.sampled_from([np.float32, np.float64, "float32", "float64", np.dtype(np.float32)])
BAD_DTYPES = st.sampled_from([np.float16, "float16", np.int32, np.uint8, np.bool_, np.complex64,
                              np.longdouble, "foo", None, 3])
FRACTIONS = st.one_of(st.floats(0, 1), st.sampled_from([0, 1, np.float32(0.5)]))
BAD_FRACTIONS = st.one_of(st.floats(-2, -1e-6), st.floats(1 + 1e-6, 3),
                          st.sampled_from([float("nan"), float("inf"), "0.1", True, None, [0.1]]))


@st.composite
def arguments(draw, **choices):
    """kwargs, each from its good values, except (half the time) one or two from their bad ones."""
    names = sorted(choices)
    spoiled = draw(st.one_of(st.just(set()), st.sets(st.sampled_from(names), min_size=1, max_size=2)),
                   label="spoiled")
    return {name: draw(choices[name][1] if name in spoiled else choices[name][0], label=name)
            for name in names}


# ----- arrays -------------------------------------------------------------------------------------
ODD_DTYPES = [np.float16, np.int64, np.uint8, np.bool_, np.complex64, np.longdouble]


def make_array(seed: int, shape, dtype, layout: str = "C") -> np.ndarray:
    """Random values of `shape` and `dtype`, in C order, Fortran order, or strided (a view)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if layout == "strided" and shape and shape[-1] > 0:
        return make_array(seed, shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
    if np.dtype(dtype).kind in "fc":
        x = np.asarray(rng.standard_normal(shape)).astype(dtype)
    else:
        x = np.asarray(rng.integers(0, 3, shape)).astype(dtype)
    return np.asfortranarray(x) if layout == "F" and x.ndim else x


def draw_array(data, shape, dtype, what: str = "input"):
    """An array of `shape` and `dtype`; or, now and then, a spoiled one: a wrong rank, one more
    channel, an empty axis, another dtype, or a list. Good ones come in any memory layout."""
    fault = data.draw(st.sampled_from(["none"] * 6 + ["rank", "channels", "empty", "dtype", "list"]),
                      label=f"{what} fault")
    shape = list(shape)
    if fault == "rank":
        shape = shape[1:] if shape and data.draw(st.booleans()) else shape + [2]
    elif fault == "channels" and len(shape) > 1:
        shape[1] += data.draw(st.integers(1, 2))
    elif fault == "empty" and shape:
        shape[data.draw(st.integers(0, len(shape) - 1))] = 0
    elif fault == "dtype":
        dtype = data.draw(st.sampled_from(ODD_DTYPES + list(FLOATS)), label=f"{what} dtype")
    layout = data.draw(st.sampled_from(["C", "C", "F", "strided"]), label=f"{what} layout")
    x = make_array(data.draw(st.integers(0, 2 ** 16)), shape, dtype, layout)
    return x.tolist() if fault == "list" else x


def draw_grad(data, y):
    """The upstream gradient for output y: good, or of another shape or dtype, or not an array."""
    if not isinstance(y, np.ndarray):                      # a loss: its output is a number
        return data.draw(st.sampled_from([1.0, 0.5, 2, np.float32(1.0), np.array(1.0), None, "1", True,
                                           np.ones(1), np.ones((2, 2)), np.array(1), [1.0]]),
                         label="loss gradient")
    fault = data.draw(st.sampled_from(["none"] * 4 + ["batch", "last", "rank", "int", "float16",
                                                     "list", "number"]), label="gradient fault")
    shape = list(y.shape)
    if fault == "batch" and shape:
        shape[0] = 1 if shape[0] > 1 else 2              # broadcastable, but not the output's shape
    elif fault == "last" and shape:
        shape[-1] += 1
    elif fault == "rank":
        shape = shape + [1]
    dtype = {"int": np.int64, "float16": np.float16}.get(fault, y.dtype)
    layout = data.draw(st.sampled_from(["C", "F", "strided"]), label="gradient layout")
    g = make_array(data.draw(st.integers(0, 2 ** 16)), shape, dtype, layout)
    return {"list": g.tolist(), "number": 1.0}.get(fault, g)


def a_good_grad(grad, y) -> bool:
    if not isinstance(y, np.ndarray) or y.shape == ():
        if a_number(grad):
            return True
    return isinstance(grad, np.ndarray) and grad.shape == np.shape(y) and grad.dtype.kind == "f"


# ----- one case: construct, forward, backward -----------------------------------------------------
def attempt(layer_name: str, call):
    """(result, None) if the call works; (None, error) if it raises ValueError or TypeError with
    a one-line message naming the layer. Any other exception fails the test."""
    try:
        return call(), None
    except (ValueError, TypeError) as error:
        message = str(error)
        assert layer_name in message, f"{type(error).__name__} names no layer: {message}"
        assert "\n" not in message, f"not one line: {message}"
        return None, error


def verdict(valid: bool, error, stage: str, what: str) -> None:
    event(f"{stage} {'refused' if error else 'works'}")       # --hypothesis-show-statistics
    if valid:
        assert error is None, f"{what} is valid but raised {type(error).__name__}: {error}"
    else:
        assert error is not None, f"{what} is invalid but was accepted"


def close(ours, reference, dtype) -> None:
    """Fast engine against the layer's own code, relative to the values' size."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    assert ours.shape == reference.shape
    assert np.max(np.abs(ours - reference), initial=0) <= tol * (1 + np.max(np.abs(reference), initial=0))


def check_layer(engine: str, data, cls, kwargs: dict, valid_kwargs: bool, draw_inputs, output_shape):
    """Construct cls(**kwargs); if that is valid, run a drawn forward and then backward.

    draw_inputs(data, layer) -> the forward's arguments; output_shape(layer, *inputs) -> the
    output's shape, or None when the inputs are invalid.
    """
    name = cls.__name__
    layer, error = attempt(name, lambda: cls(**kwargs))
    verdict(valid_kwargs, error, "constructor", f"{name}(**{kwargs})")
    if layer is None:
        return
    layer.train(data.draw(st.booleans(), label="training"))
    inputs = draw_inputs(data, layer)
    reference = copy.deepcopy(layer)                     # runs the same calls on the layer's own code
    expected = output_shape(layer, *inputs)
    y, error = attempt(name, lambda: layer(*inputs))
    verdict(expected is not None, error, "forward", f"{layer!r} forward of {describe(inputs[0])}")
    if y is None:
        return
    assert np.shape(y) == expected
    grad = draw_grad(data, y)
    dx, error = attempt(name, lambda: layer.backward(grad))
    verdict(a_good_grad(grad, y), error, "backward",
            f"{layer!r} backward of {describe(grad)} for {np.shape(y)}")
    if dx is None:
        return
    assert np.shape(dx) == np.shape(inputs[0])
    dtype = np.result_type(inputs[0])
    # Dropout draws a random mask; a float16 gradient is cast by the fast engine, and computed
    # in float16 (with its rounding) by the layer's code
    if engine == "fast" and cls is not nn.Dropout and np.result_type(grad) in (dtype, np.float64):
        with use_engine("reference"):
            y_ref = reference(*inputs)
            dx_ref = reference.backward(grad)
        close(y, y_ref, dtype)
        close(dx, dx_ref, dtype)
        for p, p_ref in zip(layer.parameters(), reference.parameters(), strict=True):
            close(p.grad, p_ref.grad, dtype)


def describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    return repr(value)


# ----- each layer ---------------------------------------------------------------------------------
def image(channels):
    """draw_inputs for a layer taking (N, C, H, W) in its dtype."""
    def draw(data, layer):
        N, H, W = (data.draw(st.integers(1, n), label=a) for a, n in (("N", 3), ("H", 8), ("W", 8)))
        return (draw_array(data, (N, channels(layer), H, W), layer.dtype),)
    return draw


@SETTINGS
@given(data=st.data())
def test_conv2d(engine, data):
    kwargs = data.draw(arguments(
        in_channels=(st.sampled_from([1, 2, 4, np.int64(2)]), BAD_INT),
        out_channels=(st.sampled_from([1, 2, 4, 16]), BAD_INT),
        kernel_size=(squares(1, 4), BAD_INT),
        stride=(squares(1, 3), BAD_INT),
        padding=(squares(0, 2), st.one_of(st.integers(-2, -1), st.sampled_from(JUNK))),
        groups=(st.sampled_from([1, 1, 2]), BAD_INT),
        bias=(FLAGS, BAD_FLAGS),
        dtype=(DTYPES, BAD_DTYPES)))
    c_in, c_out, groups = kwargs["in_channels"], kwargs["out_channels"], kwargs["groups"]
    k, s, p = side(kwargs["kernel_size"]), side(kwargs["stride"]), side(kwargs["padding"], 0)
    valid = (an_int(c_in, 1) and an_int(c_out, 1) and an_int(groups, 1) and None not in (k, s, p)
             and c_in % groups == 0 and c_out % groups == 0 and a_flag(kwargs["bias"])
             and a_dtype(kwargs["dtype"]) is not None)

    def output_shape(conv, x):
        if not an_array(x, 4, conv.in_channels, conv.dtype):
            return None
        N, _, H, W = x.shape
        H_out, W_out = pooled(H, k, s, p), pooled(W, k, s, p)
        return (N, conv.out_channels, H_out, W_out) if H_out >= 1 and W_out >= 1 else None

    check_layer(engine, data, nn.Conv2d, kwargs, valid, image(lambda conv: conv.in_channels), output_shape)


@SETTINGS
@given(data=st.data())
def test_batchnorm2d(engine, data):
    kwargs = data.draw(arguments(
        num_features=(st.sampled_from([1, 2, 3, np.int64(2)]), BAD_INT),
        eps=(st.floats(1e-8, 0.1), st.sampled_from([0, 0.0, -1e-5, float("nan"), float("inf"), "1e-5",
                                                    True, None])),
        momentum=(st.one_of(st.none(), FRACTIONS), BAD_FRACTIONS),
        dtype=(DTYPES, BAD_DTYPES)))
    momentum = kwargs["momentum"]
    valid = (an_int(kwargs["num_features"], 1) and a_number(kwargs["eps"]) and 0 < kwargs["eps"] < np.inf
             and (momentum is None or (a_number(momentum) and 0 <= momentum <= 1))
             and a_dtype(kwargs["dtype"]) is not None)

    def output_shape(bn, x):
        if not an_array(x, 4, bn.num_features, bn.dtype):
            return None
        one_value = x.shape[0] * x.shape[2] * x.shape[3] < 2
        return None if bn.training and one_value else x.shape

    check_layer(engine, data, nn.BatchNorm2d, kwargs, valid, image(lambda bn: bn.num_features),
                output_shape)


def any_rank(dtype=np.float32):
    """draw_inputs for a layer taking any shape."""
    def draw(data, layer):
        shape = data.draw(st.lists(st.integers(1, 4), min_size=0, max_size=4), label="shape")
        return (draw_array(data, shape, dtype),)
    return draw


@SETTINGS
@given(data=st.data())
def test_relu(engine, data):
    kwargs = data.draw(arguments(inplace=(FLAGS, BAD_FLAGS)))
    check_layer(engine, data, nn.ReLU, kwargs, a_flag(kwargs["inplace"]), any_rank(),
                lambda relu, x: x.shape if an_array(x) else None)


def pool_arguments(**more):
    return arguments(kernel_size=(squares(1, 4), BAD_INT),
                     stride=(st.one_of(st.none(), squares(1, 3)), BAD_INT),
                     padding=(squares(0, 1), st.one_of(st.integers(-2, -1), st.sampled_from(JUNK))),
                     **more)


def check_pool(engine, data, cls, kwargs, ceil_mode=False, valid=True):
    k, p = side(kwargs["kernel_size"]), side(kwargs["padding"], 0)
    s = k if kwargs["stride"] is None else side(kwargs["stride"])
    valid = valid and None not in (k, s, p) and 2 * p <= k

    def output_shape(pool, x):
        if not an_array(x, 4):
            return None
        N, C, H, W = x.shape
        H_out, W_out = pooled(H, k, s, p, ceil_mode), pooled(W, k, s, p, ceil_mode)
        return (N, C, H_out, W_out) if H_out >= 1 and W_out >= 1 else None

    channels = st.integers(1, 3)
    check_layer(engine, data, cls, kwargs, valid, image(lambda pool: data.draw(channels)),
                output_shape)


@SETTINGS
@given(data=st.data())
def test_maxpool2d(engine, data):
    check_pool(engine, data, nn.MaxPool2d, data.draw(pool_arguments()))


@SETTINGS
@given(data=st.data())
def test_avgpool2d(engine, data):
    kwargs = data.draw(pool_arguments(ceil_mode=(FLAGS, BAD_FLAGS), count_include_pad=(FLAGS, BAD_FLAGS)))
    flags_ok = a_flag(kwargs["ceil_mode"]) and a_flag(kwargs["count_include_pad"])
    check_pool(engine, data, nn.AvgPool2d, kwargs, ceil_mode=bool(kwargs["ceil_mode"]) and flags_ok,
               valid=flags_ok)


@SETTINGS
@given(data=st.data())
def test_adaptive_avgpool2d(engine, data):
    kwargs = data.draw(arguments(output_size=(st.sampled_from([1, (1, 1), [1, 1], np.int64(1)]),
                                              st.sampled_from([0, 2, (2, 2), (1, 2), True, None, "1", 1.0]))))
    check_layer(engine, data, nn.AdaptiveAvgPool2d, kwargs, side(kwargs["output_size"]) == 1,
                image(lambda pool: 3), lambda pool, x: (*x.shape[:2], 1, 1) if an_array(x, 4) else None)


@SETTINGS
@given(data=st.data())
def test_linear(engine, data):
    kwargs = data.draw(arguments(in_features=(ints(1, 5), BAD_INT), out_features=(ints(1, 5), BAD_INT),
                                 bias=(FLAGS, BAD_FLAGS), dtype=(DTYPES, BAD_DTYPES)))
    valid = (an_int(kwargs["in_features"], 1) and an_int(kwargs["out_features"], 1)
             and a_flag(kwargs["bias"]) and a_dtype(kwargs["dtype"]) is not None)

    def draw_inputs(data, linear):
        return (draw_array(data, (data.draw(st.integers(1, 4)), linear.in_features), linear.dtype),)

    def output_shape(fc, x):
        return (x.shape[0], fc.out_features) if an_array(x, 2, fc.in_features, fc.dtype) else None

    check_layer(engine, data, nn.Linear, kwargs, valid, draw_inputs, output_shape)


@SETTINGS
@given(data=st.data())
def test_flatten(engine, data):
    kwargs = data.draw(arguments(start_dim=(st.integers(-4, 3),
                                            st.sampled_from([1.0, "1", None, True, (1,)]))))

    def output_shape(flatten, x):
        d = flatten.start_dim
        if not an_array(x) or not -x.ndim <= d < x.ndim:
            return None
        return (*x.shape[:d], int(np.prod(x.shape[d:])))

    check_layer(engine, data, nn.Flatten, kwargs, an_int(kwargs["start_dim"]), any_rank(), output_shape)


@SETTINGS
@given(data=st.data())
def test_identity(engine, data):
    """Identity takes any arguments and passes anything through, as PyTorch's."""
    kwargs = data.draw(st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(JUNK), max_size=2))
    identity = nn.Identity(*kwargs.values(), **kwargs)
    x, = any_rank()(data, identity)
    grad = draw_grad(data, x) if isinstance(x, np.ndarray) else x
    assert identity(x) is x and identity.backward(grad) is grad


@SETTINGS
@given(data=st.data())
def test_dropout(engine, data):
    kwargs = data.draw(arguments(p=(st.floats(0, 0.99), BAD_FRACTIONS | st.just(1.0))))
    valid = a_number(kwargs["p"]) and 0 <= kwargs["p"] < 1
    check_layer(engine, data, nn.Dropout, kwargs, valid, any_rank(np.float64),
                lambda dropout, x: x.shape if an_array(x) else None)


@SETTINGS
@given(data=st.data())
def test_cross_entropy_loss(engine, data):
    kwargs = data.draw(arguments(
        label_smoothing=(FRACTIONS, BAD_FRACTIONS),
        reduction=(st.sampled_from(["mean", "sum"]), st.sampled_from(["none", "MEAN", None, 1, ["mean"]]))))
    ls = kwargs["label_smoothing"]
    valid = a_number(ls) and 0 <= ls <= 1 and kwargs["reduction"] in ("mean", "sum")

    def draw_inputs(data, loss):
        N, K = data.draw(st.integers(1, 4), label="N"), data.draw(st.integers(1, 5), label="K")
        logits = draw_array(data, (N, K), data.draw(st.sampled_from(FLOATS)), "logits")
        rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
        fault = data.draw(st.sampled_from(["none"] * 4 + ["high", "negative", "float", "length", "rank",
                                                         "list", "bool"]), label="targets fault")
        targets = rng.integers(0, K, N)
        if fault == "high":
            targets[-1] = K
        elif fault == "negative":
            targets[0] = -1
        targets = {"float": targets.astype(np.float32), "length": targets[:-1], "rank": targets[:, None],
                   "list": targets.tolist(), "bool": targets > 0}.get(fault, targets)
        return logits, targets

    def output_shape(loss, logits, targets):
        t = np.asarray(targets)
        ok = (an_array(logits, 2) and t.shape == (logits.shape[0],) and t.dtype.kind in "iu"
              and t.min() >= 0 and t.max() < logits.shape[1])
        return () if ok else None

    check_layer(engine, data, nn.CrossEntropyLoss, kwargs, valid, draw_inputs, output_shape)


# ----- the cases issue 18 names, and the ones hypothesis cannot draw ------------------------------
X = np.zeros((2, 3, 4, 4), np.float32)
NAMED_CASES = [
    ("stride 0", lambda: nn.Conv2d(3, 4, 3, stride=0), "Conv2d: stride"),
    ("kernel 0", lambda: nn.Conv2d(3, 4, 0), "Conv2d: kernel_size"),
    ("groups 0", lambda: nn.Conv2d(3, 4, 3, groups=0), "Conv2d: groups"),
    ("in_channels 0", lambda: nn.Conv2d(0, 4, 3), "Conv2d: in_channels"),
    ("negative padding", lambda: nn.Conv2d(3, 4, 3, padding=-1), "Conv2d: padding"),
    ("kernel_size 2.7", lambda: nn.Conv2d(3, 4, 2.7), "Conv2d: kernel_size"),
    ("kernel_size 3.0", lambda: nn.Conv2d(3, 4, 3.0), "Conv2d: kernel_size"),
    ("kernel_size True", lambda: nn.Conv2d(3, 4, True), "Conv2d: kernel_size"),
    ("conv kernel larger than the padded image", lambda: nn.Conv2d(3, 4, 7, padding=1)(X), "Conv2d(3, 4"),
    ("max pool kernel larger than the image", lambda: nn.MaxPool2d(5)(X), "MaxPool2d(kernel_size=5"),
    ("avg pool kernel larger than the image", lambda: nn.AvgPool2d(5)(X), "AvgPool2d(kernel_size=5"),
    ("pool stride 0", lambda: nn.MaxPool2d(2, stride=0), "MaxPool2d: stride"),
    ("pool kernel 2.5", lambda: nn.AvgPool2d(2.5), "AvgPool2d: kernel_size"),
    ("pool padding over half the kernel", lambda: nn.MaxPool2d(2, padding=2), "MaxPool2d: padding"),
    ("empty batch to the loss", lambda: nn.CrossEntropyLoss()(np.zeros((0, 3)), np.zeros(0, int)),
     "CrossEntropyLoss"),
    ("empty batch to a conv", lambda: nn.Conv2d(3, 4, 3)(X[:0]), "Conv2d(3, 4"),
    ("BatchNorm2d eps 0", lambda: nn.BatchNorm2d(3, eps=0), "BatchNorm2d: eps"),
    ("BatchNorm2d momentum 2", lambda: nn.BatchNorm2d(3, momentum=2), "BatchNorm2d: momentum"),
    ("BatchNorm2d num_features 0", lambda: nn.BatchNorm2d(0), "BatchNorm2d: num_features"),
    ("Linear 0 features", lambda: nn.Linear(0, 3), "Linear: in_features"),
    ("Dropout p 1", lambda: nn.Dropout(1.0), "Dropout: p"),
    ("float16 layers", lambda: nn.Conv2d(3, 4, 3, dtype=np.float16), "Conv2d: dtype"),
    ("float16 input to a layer without parameters", lambda: nn.ReLU()(X.astype(np.float16)), "ReLU()"),
    ("a wrong gradient shape", lambda: _backward_of(nn.BatchNorm2d(3), X, X[:1]), "BatchNorm2d(3"),
]


def _backward_of(layer, x, grad):
    layer(x)
    return layer.backward(grad)


@pytest.mark.parametrize("name, call, says", NAMED_CASES, ids=[c[0] for c in NAMED_CASES])
def test_the_named_bad_inputs_raise_one_line_naming_the_layer(engine, name, call, says):
    with pytest.raises((ValueError, TypeError)) as error:
        call()
    assert says in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("dtype", [np.float16, "float16", np.int64, np.complex64, np.longdouble, "foo",
                                   None, np.float64])
def test_module_to_takes_the_dtypes_the_layers_run_and_lists_them_for_any_other(dtype):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    if dtype is np.float64:
        assert net.to(dtype).dtype == np.float64
        return
    with pytest.raises((ValueError, TypeError), match=r"Sequential\.to: dtype must be float32 or float64"):
        net.to(dtype)
    assert net.dtype == np.float32                      # nothing cast


def test_the_dtype_advice_suggests_only_dtypes_the_layers_run():
    with pytest.raises(ValueError) as error:
        nn.Conv2d(3, 4, 3)(X.astype(np.float16))
    assert "float16" in str(error.value) and ".to(np.float16)" not in str(error.value)
    with pytest.raises(ValueError, match=r"x\.astype\(np\.float32\) or module\.to\(np\.float64\)"):
        nn.Conv2d(3, 4, 3)(X.astype(np.float64))


BACKWARD_FIRST = [nn.Conv2d(3, 4, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2),
                  nn.AdaptiveAvgPool2d(1), nn.Linear(3, 2), nn.Flatten(), nn.Dropout(), nn.CrossEntropyLoss()]


@pytest.mark.parametrize("layer", BACKWARD_FIRST, ids=[type(m).__name__ for m in BACKWARD_FIRST])
def test_backward_before_forward_is_an_error_naming_the_layer(engine, layer):
    """A call out of order, not a bad value: RuntimeError, as PyTorch's autograd raises."""
    with pytest.raises(RuntimeError, match=rf"{type(layer).__name__}\(.*backward\(\) called before forward"):
        layer.backward(np.ones((2, 4, 2, 2), np.float32))
