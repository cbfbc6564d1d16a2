"""The measurements made in this process: the model, its training step, each layer alone, and
the step's time by layer type; also the helpers the other bench modules share (timing, threads,
the model and a batch).

Every time is the median of `steps` calls after `warmup` untimed ones (run_times, median_time).
Layers are timed on the engine that is set (numpy_resnet.use_engine): with "fast", each layer's
fast twin in engine/layers.py; with "reference", the layer's own code in nn/.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections import Counter
from contextlib import contextmanager

import numpy as np

from ..engine import get_engine
from ..models import get_model
from ..nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
)
from ..optim import SGD
from ..summary import layer_macs

CATEGORIES = ("conv", "batchnorm", "relu", "pool", "linear", "other")
_CATEGORY_OF = {Conv2d: "conv", BatchNorm2d: "batchnorm", ReLU: "relu", MaxPool2d: "pool",
                AvgPool2d: "pool", AdaptiveAvgPool2d: "pool", Linear: "linear"}
NUM_CLASSES = 10
IMAGE = (3, 32, 32)


# ----- timing and threads ---------------------------------------------------------------------
def run_times(fn, steps: int, warmup: int) -> list[float]:
    """Seconds of each of `steps` timed calls of fn() after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(steps, 1)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_time(fn, steps: int, warmup: int) -> float:
    """Seconds: the median of `steps` timed calls of fn() after `warmup` untimed ones."""
    return statistics.median(run_times(fn, steps, warmup))


@contextmanager
def limit_threads(threads: int):
    """The fast engine's workers (kernels/threads.py) and Numba's parallel kernels on `threads`
    threads inside the block; the previous counts come back after it. Yields what was set.

    BLAS stays at one thread per call: the workers are the parallelism (see kernels/threads.py).
    NUMBA_NUM_THREADS is fixed at import; numba.set_num_threads can lower it, not raise it.
    """
    import numba

    from ..kernels import blas
    from ..kernels import threads as workers

    previous_workers, previous_numba = workers.get_num_threads(), numba.get_num_threads()
    numba_threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    workers.set_num_threads(threads)
    numba.set_num_threads(numba_threads)
    try:
        yield {"requested": threads, "workers": threads, "numba": numba_threads,
               "blas": blas.describe()}
    finally:
        workers.set_num_threads(previous_workers)
        numba.set_num_threads(previous_numba)


@contextmanager
def blas_threads(n: int):
    """BLAS itself on n threads inside the block (for the sgemm ceiling), then one again."""
    from ..kernels import blas

    before = blas.get_num_threads()
    blas.set_num_threads(n)
    try:
        yield
    finally:
        blas.set_num_threads(before or 1)


# ----- the network, one training step -----------------------------------------------------------
def build_model(width: int) -> Module:
    return get_model("resnet18", num_classes=NUM_CLASSES, stem="cifar", width=width)


def architecture(shapes: dict) -> dict:
    """{key: shape} of a state_dict -> a fingerprint of its keys and shapes, and the number
    of parameters. Two networks with the same fingerprint are built alike (ours and torch's)."""
    text = ";".join(f"{key}:{tuple(shape)}" for key, shape in shapes.items())
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    params = sum(int(np.prod(shape)) for key, shape in shapes.items() if not key.endswith(buffers))
    return {"fingerprint": hashlib.sha1(text.encode()).hexdigest()[:12], "parameters": params}


def random_batch(batch_size: int, rng: np.random.Generator, dtype=np.float32):
    """x: (N, 3, 32, 32) standard normal, y: (N,) labels in 0..9."""
    x = rng.standard_normal((batch_size, *IMAGE)).astype(dtype)
    return x, rng.integers(0, NUM_CLASSES, batch_size)


def make_training_step(model: Module):
    """step(x, y): forward, cross-entropy, backward, SGD step; torch's recipe in torch_side.py."""
    criterion = CrossEntropyLoss()
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(x: np.ndarray, y: np.ndarray) -> None:
        optimizer.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward(), need_input_grad=False)    # as training does
        optimizer.step()

    return step


# ----- timers on the layers, through Module hooks ---------------------------------------------
def category(module: Module) -> str:
    """"conv", "batchnorm", "relu", "pool", "linear", or "other"."""
    for cls, name in _CATEGORY_OF.items():
        if isinstance(module, cls):
            return name
    return "other"


def timed_layers(model: Module) -> list[Module]:
    """The layers whose time is attributed to a type: every module not in "other"."""
    return [m for m in model.modules() if category(m) != "other"]


@contextmanager
def hooked(modules: list[Module], *, forward_pre=None, forward=None, backward_pre=None,
           backward=None):
    """Register the given hooks on every module for the block; all removed when it ends.

    Hooks run on every call of a layer, whoever calls it (model, block, Sequential), and they
    leave the layer's own fast twin in place; a hooked layer only keeps its block from running
    it inside a fused pass (engine/fused.py).
    """
    handles = []
    try:
        for m in modules:
            if forward_pre is not None:
                handles.append(m.register_forward_pre_hook(forward_pre))
            if forward is not None:
                handles.append(m.register_forward_hook(forward))
            if backward_pre is not None:
                handles.append(m.register_full_backward_pre_hook(backward_pre))
            if backward is not None:
                handles.append(m.register_full_backward_hook(backward))
        yield
    finally:
        for handle in handles:
            handle.remove()


def layer_inputs(model: Module, x: np.ndarray) -> list[tuple[Module, tuple]]:
    """Each timed layer with the input shape it receives in one forward of x, in order."""
    seen = []

    def record(module, args):
        seen.append((module, args[0].shape))

    with hooked(timed_layers(model), forward_pre=record):
        model(x)
    return seen


def step_shares(model: Module, run, repeats: int) -> dict:
    """Run `run()` `repeats` times with a stopwatch on every timed layer's forward and backward.

    A pre-hook starts the layer's watch, the hook after it stops it and adds the time to the
    layer's type. Every block then runs its layers one by one, each on its own twin, rather
    than conv -> BatchNorm -> ReLU fused: the shares are those of the unfused step.
    Returns the breakdown of the run with the median total time (a noisy neighbour can stall
    any one run): {type: {"ms": ..., "share": fraction of that run}}; "other" is the rest of
    the run, so the shares sum to 1.
    """
    spent = dict.fromkeys(CATEGORIES, 0.0)
    started = {}                                            # module -> perf_counter at its start

    def start(module, _):
        started[module] = time.perf_counter()

    def stop(module, *_):
        spent[category(module)] += time.perf_counter() - started.pop(module)

    runs = []
    with hooked(timed_layers(model), forward_pre=start, forward=stop, backward_pre=start,
                backward=stop):
        for _ in range(max(repeats, 1)):
            spent.update(dict.fromkeys(CATEGORIES, 0.0))
            begin = time.perf_counter()
            run()
            total = time.perf_counter() - begin
            runs.append((total, {**spent, "other": total - sum(spent.values())}))
    runs.sort(key=lambda r: r[0])
    total, median_run = runs[len(runs) // 2]
    return {kind: {"ms": 1e3 * t, "share": t / total} for kind, t in median_run.items()}


# ----- the measurements -------------------------------------------------------------------------
def sgemm_ceiling(size: int, steps: int, warmup: int, seed: int = 0, threads: int = 1) -> dict:
    """C = A·B with A, B: (size, size) float32 through NumPy, BLAS on `threads`: 2·size³ FLOPs.

    The fastest of the runs, not the median: a ceiling is what the machine can do, and on a
    shared machine a slow run is another job's doing (a median once came out at half the best).
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    with blas_threads(threads):
        seconds = min(run_times(lambda: a @ b, max(steps, 5), max(warmup, 1)))
    return {"size": size, "ms": 1e3 * seconds, "gflops": 2 * size ** 3 / seconds / 1e9}


def layer_label(m: Module) -> str:
    """A short name: "conv3x3 16->32 s2", "batchnorm 32", "relu", "linear 128->10" ..."""
    if isinstance(m, Conv2d):
        k = m.kernel_size
        label = f"conv{k}x{k} {m.in_channels}->{m.out_channels}"
        label += f" s{m.stride}" if m.stride != 1 else ""
        return label + (f" g{m.groups}" if m.groups != 1 else "")
    if isinstance(m, BatchNorm2d):
        return f"batchnorm {m.num_features}"
    if isinstance(m, Linear):
        return f"linear {m.in_features}->{m.out_features}"
    if isinstance(m, (MaxPool2d, AvgPool2d)):
        k = m.kernel_size
        return f"{type(m).__name__.lower()[:-2]} {k}x{k} s{m.stride}"
    if isinstance(m, AdaptiveAvgPool2d):
        return "global avgpool"
    return type(m).__name__.lower()


def forward_route(m: Module, shape: tuple) -> str | None:
    """How the engine that is set computes a conv (forward, and so backward): on the fast
    engine "winograd", "im2col" or "gemm" (1x1, stride 1), as engine/layers.py chooses; on
    the reference engine always "im2col" (nn/conv.py)."""
    if not isinstance(m, Conv2d):
        return None
    if get_engine() != "fast" or m.groups != 1:                # grouped: one GEMM per group
        return "im2col"
    from ..kernels import winograd
    if winograd.applies(m.weight.data, m.stride, m.padding):
        return "winograd"
    return "gemm" if m.kernel_size == 1 and m.stride == 1 and m.padding == 0 else "im2col"


def _as_in_the_network(a: np.ndarray) -> np.ndarray:
    """a, laid out as the engine passes it from layer to layer: channels-last on the fast
    engine (its twins write that), C-ordered on the reference engine."""
    if a.ndim != 4 or get_engine() != "fast":
        return a
    from ..kernels import conv_nhwc

    return conv_nhwc.from_nhwc(conv_nhwc.to_nhwc(a))


def time_layer(m: Module, shape: tuple, count: int, steps: int, warmup: int, train: bool,
               rng: np.random.Generator) -> dict:
    """One layer alone on a random input of `shape`: forward (and backward) ms and GFLOP/s.

    4-D inputs and gradients are laid out as in the network (_as_in_the_network).
    """
    x = _as_in_the_network(rng.standard_normal(shape).astype(m.dtype))
    y = m.forward(x)
    forward = median_time(lambda: m.forward(x), steps, warmup)
    row = {"layer": layer_label(m), "type": category(m), "input": list(shape), "count": count,
           "forward_ms": 1e3 * forward, "backward_ms": None,
           "flops": None, "forward_gflops": None, "backward_gflops": None,
           "forward_route": forward_route(m, shape)}
    if train:
        dy = _as_in_the_network(rng.standard_normal(y.shape).astype(y.dtype))
        row["backward_ms"] = 1e3 * median_time(lambda: m.backward(dy), steps, warmup)
    macs = layer_macs(m, y.shape) * shape[0]               # layer_macs counts one image
    if macs:
        row["flops"] = 2 * macs
        row["forward_gflops"] = 2 * macs / forward / 1e9
        if train:
            row["backward_gflops"] = 2 * 2 * macs / (row["backward_ms"] / 1e3) / 1e9
    return row


def measure_layers(model: Module, x: np.ndarray, steps: int, warmup: int, train: bool,
                   seed: int = 0) -> list[dict]:
    """time_layer for each distinct (layer config, input shape), in the order of the forward."""
    first, count = {}, Counter()
    for module, shape in layer_inputs(model, x):
        key = (repr(module), shape)                     # the layer's arguments and its input
        first.setdefault(key, module)
        count[key] += 1
    rng = np.random.default_rng(seed)
    rows = [time_layer(module, key[1], count[key], steps, warmup, train, rng)
            for key, module in first.items()]
    model.zero_grad()
    return rows


def measure_network(model: Module, batch_size: int, steps: int, warmup: int, train: bool,
                    seed: int = 0) -> dict:
    """Training step and inference: ms and images/s; the step's (or inference's) shares."""
    x, y = random_batch(batch_size, np.random.default_rng(seed), model.dtype)
    result = {}
    if train:
        step = make_training_step(model)
        seconds = median_time(lambda: step(x, y), steps, warmup)
        result["train"] = {"ms": 1e3 * seconds, "images_per_s": batch_size / seconds}
        result["shares"] = step_shares(model, lambda: step(x, y), steps)
    model.eval()
    seconds = median_time(lambda: model(x), steps, warmup)
    result["inference"] = {"ms": 1e3 * seconds, "images_per_s": batch_size / seconds}
    if not train:
        result["shares"] = step_shares(model, lambda: model(x), steps)
    model.train()
    return result
