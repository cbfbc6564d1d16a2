"""Benchmark: where the time of a ResNet-18 training step goes, and how far it is from the machine.

    numpy-resnet bench [--width 16] [--batch-size 128] [--steps 5] [--warmup 2] [--threads T]
                       [--vs-torch] [--json out.json] [--eval]

For ResNet-18 with the CIFAR stem (32x32 images, 10 classes), float32:

    ceiling   a 2048x2048 float32 matmul through NumPy's BLAS on all threads: the GFLOP/s a
              GEMM reaches here (the kernels OpenBLAS runs are in the header: the environment
              can force older ones with OPENBLAS_CORETYPE)
    layers    every distinct (layer, input shape) of the network run alone, forward and
              backward, in ms; convolutions and the Linear also in GFLOP/s, with
              FLOPs = 2·MACs and backward = 2x forward (dW and dx are each one GEMM that size)
    step      forward, loss, backward, SGD step (momentum 0.9): ms and images/s;
              inference (eval mode, forward only): images/s
    shares    every layer's forward and backward wrapped with a timer on the instance while
              the step runs (then unwrapped): the step's time by layer type; "other" is the
              rest (loss, SGD, residual additions, zero_grad, Flatten, Identity). Wrapped
              layers run one after the other, so conv -> BatchNorm -> ReLU is not fused here
              (kernels/fused.py) as it is in the step timed above
    compile   the first step of a small model in a fresh process minus its second step:
              Numba compiling from scratch (an empty NUMBA_CACHE_DIR), then, in another fresh
              process, loading what the first one cached
    memory    peak resident memory of one training step above what the process held just
              before it, in a fresh process; PyTorch is measured the same way
              (compile and memory: bench_process.py)

Every time is the median of --steps runs after --warmup runs: machines are noisy, so quote
ratios rather than absolute numbers. --eval measures inference only (forward, eval mode).
--vs-torch runs the same network, batch, step and thread count in PyTorch (bench_torch.py)
in a separate process, so that the two runtimes' thread pools never compete; then --rounds
times (default 3) our step and PyTorch's in turn, seconds apart, and the ratios quoted are
the median of those rounds' (bench_process.alternating_rounds: a shared machine drifts).
"""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata

import numpy as np

from .models import get_model
from .nn import (
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
from .optim import SGD
from .summary import layer_macs

CATEGORIES = ("conv", "batchnorm", "relu", "pool", "linear", "other")
_CATEGORY_OF = {Conv2d: "conv", BatchNorm2d: "batchnorm", ReLU: "relu", MaxPool2d: "pool",
                AvgPool2d: "pool", AdaptiveAvgPool2d: "pool", Linear: "linear"}
NUM_CLASSES = 10
IMAGE = (3, 32, 32)


@dataclass
class BenchConfig:
    """What `numpy-resnet bench` measures; threads=None means os.cpu_count()."""
    width: int = 16
    batch_size: int = 128
    steps: int = 5
    warmup: int = 2
    threads: int | None = None
    vs_torch: bool = False
    eval_only: bool = False
    compile_time: bool = True
    sgemm_size: int = 2048
    seed: int = 0
    rounds: int = 3                     # with vs_torch: ours and torch's step in turn, this many times
    torch_same_malloc: bool = False     # with vs_torch: PyTorch with our glibc thresholds (memory.py)


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
    """The fast path's workers (kernels/threads.py) and Numba's parallel kernels on `threads`
    threads inside the block; the previous counts come back after it. Yields what was set.

    BLAS stays at one thread per call: the workers are the parallelism (see threads.py).
    NUMBA_NUM_THREADS is fixed at import; numba.set_num_threads can lower it, not raise it.
    """
    import numba

    from .kernels import blas
    from .kernels import threads as workers

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
    from .kernels import blas

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
    """step(x, y): forward, cross-entropy, backward, SGD step; torch's recipe in bench_torch."""
    criterion = CrossEntropyLoss()
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(x: np.ndarray, y: np.ndarray) -> None:
        optimizer.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward(), need_input_grad=False)    # as training does
        optimizer.step()

    return step


# ----- wrapping layer methods on the instance ----------------------------------------------------
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
def wrapped(modules: list[Module], names: tuple[str, ...], wrap):
    """Replace module.<name> by wrap(module, method) on each instance, then restore.

    An attribute set on the instance hides the class's method, and every caller (model,
    block, Sequential) goes through the instance, so each call of the layer is seen.
    """
    saved = [(m, name, m.__dict__.get(name)) for m in modules for name in names]
    for m, name, _ in saved:
        object.__setattr__(m, name, wrap(m, getattr(m, name)))
    try:
        yield
    finally:
        for m, name, own in saved:
            if own is None:
                del m.__dict__[name]                    # back to the class's method
            else:
                object.__setattr__(m, name, own)


def layer_inputs(model: Module, x: np.ndarray) -> list[tuple[Module, tuple]]:
    """Each timed layer with the input shape it receives in one forward of x, in order."""
    seen = []

    def record(module, forward):
        def recorded(inp):
            seen.append((module, inp.shape))
            return forward(inp)
        return recorded

    with wrapped(timed_layers(model), ("forward",), record):
        model(x)
    return seen


def step_shares(model: Module, run, repeats: int) -> dict:
    """Run `run()` `repeats` times with every timed layer's forward/backward on a stopwatch.

    Returns the breakdown of the run with the median total time (a noisy neighbour can stall
    any one run): {type: {"ms": ..., "share": fraction of that run}}; "other" is the rest of
    the run, so the shares sum to 1.
    """
    spent = dict.fromkeys(CATEGORIES, 0.0)

    def stopwatch(module, method):
        kind = category(module)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = method(*args, **kwargs)
            spent[kind] += time.perf_counter() - start
            return out
        return timed

    runs = []
    with wrapped(timed_layers(model), ("forward", "backward"), stopwatch):
        for _ in range(max(repeats, 1)):
            spent.update(dict.fromkeys(CATEGORIES, 0.0))
            start = time.perf_counter()
            run()
            total = time.perf_counter() - start
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
    """How the fast path computes a conv (forward, and so backward): "winograd", "im2col" or
    "gemm" (1x1, stride 1)."""
    if not isinstance(m, Conv2d):
        return None
    from .kernels import winograd
    if m.groups == 1 and winograd.applies(m.weight.data, m.stride, m.padding):
        return "winograd"
    return "gemm" if m.kernel_size == 1 and m.stride == 1 and m.padding == 0 else "im2col"


def _as_in_the_network(a: np.ndarray) -> np.ndarray:
    from .kernels import conv_nhwc

    return conv_nhwc.from_nhwc(conv_nhwc.to_nhwc(a)) if a.ndim == 4 else a


def time_layer(m: Module, shape: tuple, count: int, steps: int, warmup: int, train: bool,
               rng: np.random.Generator) -> dict:
    """One layer alone on a random input of `shape`: forward (and backward) ms and GFLOP/s.

    4-D inputs and gradients are channels-last, as the layers of the fast path pass them on.
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


def machine_info() -> dict:
    """CPU count and model, Python, NumPy (and its BLAS), Numba and PyTorch versions."""
    import numba

    info = {"cpu_count": os.cpu_count(), "cpu_model": platform.processor() or platform.machine(),
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "blas": {}}
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else info["cpu_model"]
    try:
        info["torch"] = metadata.version("torch")            # the version, without importing torch
    except metadata.PackageNotFoundError:
        info["torch"] = None
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
    except (TypeError, KeyError):
        pass                                                # NumPy < 1.26 prints, returns nothing
    try:
        info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:                                      # no parallel kernel has run yet
        info["numba_threading_layer"] = None
    return info


def run_bench(config: BenchConfig, log=lambda message: None) -> dict:
    """Every measurement of the module docstring; a JSON-ready dict (see bench_report)."""
    threads = config.threads or os.cpu_count() or 1
    report = {"config": {**asdict(config), "threads": threads, "model": "resnet18",
                         "stem": "cifar", "num_classes": NUM_CLASSES, "dtype": "float32"},
              "machine": None}
    with limit_threads(threads) as thread_counts:
        report["threads"] = thread_counts
        _measure_in_this_process(config, report, log)
    _measure_in_fresh_processes(config, threads, report, log)
    report["machine"] = machine_info()                   # last: Numba's threading layer is known
    return report


def _measure_in_this_process(config: BenchConfig, report: dict, log) -> None:
    """The ceiling, each distinct layer alone, the training step and inference, the shares."""
    train = not config.eval_only
    log(f"bench: sgemm ceiling ({config.sgemm_size}x{config.sgemm_size} float32)")
    report["ceiling"] = sgemm_ceiling(config.sgemm_size, config.steps, config.warmup, config.seed,
                                      report["threads"]["requested"])
    model = build_model(config.width)
    report["architecture"] = architecture({k: v.shape for k, v in model.state_dict().items()})
    x, _ = random_batch(config.batch_size, np.random.default_rng(config.seed))
    log("bench: each distinct layer alone")
    model.train(train)
    report["layers"] = measure_layers(model, x, config.steps, config.warmup, train, config.seed)
    for row in report["layers"]:
        if row["forward_gflops"]:
            row["forward_pct_ceiling"] = 100 * row["forward_gflops"] / report["ceiling"]["gflops"]
    model.train()
    log("bench: whole network" + (", training step and inference" if train else ", inference"))
    report.update(measure_network(model, config.batch_size, config.steps, config.warmup, train,
                                  config.seed))


def _measure_in_fresh_processes(config: BenchConfig, threads: int, report: dict, log) -> None:
    """Numba's compile time, peak memory, and with --vs-torch PyTorch's numbers and the ratios."""
    from .bench_process import alternating_rounds, compile_times, peak_memory, torch_results

    train = not config.eval_only
    if config.compile_time:
        log("bench: Numba compile time, two fresh processes")
        report["compile"] = compile_times(threads)
    log("bench: peak memory, a fresh process")
    report["memory"] = peak_memory(config.width, config.batch_size, threads, train)
    if config.vs_torch:
        log(f"bench: the same in PyTorch ({threads} threads), a fresh process")
        report["torch"] = torch_results(config.width, config.batch_size, config.steps,
                                        config.warmup, threads, train, config.torch_same_malloc)
        if config.rounds > 0:
            log(f"bench: {config.rounds} rounds of our step and PyTorch's in turn")
            report["rounds"] = alternating_rounds(config.width, config.batch_size, threads,
                                                  config.rounds, config.steps, config.warmup, train,
                                                  config.torch_same_malloc)
        report["ratios"] = ratios(report)


def ratios(report: dict) -> dict:
    """numpy-resnet / torch for images/s (higher is faster) and step memory (higher is bigger).

    With alternating rounds, the speed ratios are the median of the rounds' ratios; without,
    our numbers over PyTorch's fresh process's, measured a minute apart.
    """
    ours, theirs, rounds = report, report["torch"], report.get("rounds")
    out = {}
    for key in ("train", "inference"):
        if rounds and key in rounds:
            out[key] = statistics.median(rounds[key]["ratios"])
        elif key in ours and key in theirs:
            out[key] = ours[key]["images_per_s"] / theirs[key]["images_per_s"]
    if theirs["memory"]["step_mib"] > 0:
        out["memory"] = ours["memory"]["step_mib"] / theirs["memory"]["step_mib"]
    return out
