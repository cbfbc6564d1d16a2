"""Benchmark: where the time of a ResNet-18 training step goes, and how far it is from the machine.

    numpy-resnet bench [--width 16] [--batch-size 128] [--steps 5] [--warmup 2] [--threads T]
                       [--engine fast|reference] [--vs-torch] [--json out.json] [--eval]

For ResNet-18 with the CIFAR stem (32x32 images, 10 classes), float32, on the engine chosen
(numpy_resnet.use_engine; "fast" by default, "reference" runs the textbook's own code):

    ceiling   a 2048x2048 float32 matmul through NumPy's BLAS on all threads: the GFLOP/s a
              GEMM reaches here (the kernels OpenBLAS runs are in the header: the environment
              can force older ones with OPENBLAS_CORETYPE)
    layers    every distinct (layer, input shape) of the network run alone, forward and
              backward, in ms; convolutions and the Linear also in GFLOP/s, with
              FLOPs = 2·MACs and backward = 2x forward (dW and dx are each one GEMM that size)
    step      forward, loss, backward, SGD step (momentum 0.9): ms and images/s;
              inference (eval mode, forward only): images/s
    shares    the step's time by layer type, from a timer on every layer's forward and backward
              (Module hooks, removed afterwards); "other" is the rest (loss, SGD, residual
              additions, zero_grad, Flatten, Identity). A hooked layer cannot run inside a
              fused pass, so here every block runs its layers one by one, each on its own fast
              twin, not conv -> BatchNorm -> ReLU fused (engine/fused.py) as in the step above
    compile   the first step of a small model in a fresh process minus its second step:
              Numba compiling from scratch (an empty NUMBA_CACHE_DIR), then, in another fresh
              process, loading what the first one cached (the fast engine only: the reference
              engine compiles nothing)
    memory    peak resident memory of one training step above what the process held just
              before it, in a fresh process; PyTorch is measured the same way

Every time is the median of --steps runs after --warmup runs: machines are noisy, so quote
ratios rather than absolute numbers. --eval measures inference only (forward, eval mode).
--vs-torch runs the same network, batch, step and thread count in PyTorch (torch_side.py)
in a separate process, so that the two runtimes' thread pools never compete; then --rounds
times (default 3) our step and PyTorch's in turn, seconds apart, and the ratios quoted are
the median of those rounds' (process.alternating_rounds: a shared machine drifts).

The modules: timing.py (the model, the step, each layer alone, the shares), process.py (the
fresh-process probes), torch_side.py (the only one that imports torch, run in its own
process), report.py (the text tables). Each imports timing.py, none imports this one.
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import asdict, dataclass
from importlib import metadata

import numpy as np

from ..engine import use_engine
from .process import alternating_rounds, compile_times, peak_memory, torch_results
from .report import format_report
from .timing import (
    NUM_CLASSES,
    architecture,
    build_model,
    limit_threads,
    measure_layers,
    measure_network,
    random_batch,
    sgemm_ceiling,
)

__all__ = ["BenchConfig", "run_bench", "format_report", "ratios", "machine_info"]


@dataclass
class BenchConfig:
    """What `numpy-resnet bench` measures; threads=None means os.cpu_count()."""
    width: int = 16
    batch_size: int = 128
    steps: int = 5
    warmup: int = 2
    threads: int | None = None
    engine: str = "fast"                # numpy_resnet.use_engine: "fast" or "reference"
    vs_torch: bool = False
    eval_only: bool = False
    compile_time: bool = True
    sgemm_size: int = 2048
    seed: int = 0
    rounds: int = 3                     # with vs_torch: ours and torch's step in turn, this many times
    torch_same_malloc: bool = False     # with vs_torch: PyTorch with our glibc thresholds (memory.py)


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
    """Every measurement of the module docstring; a JSON-ready dict (see report.py)."""
    threads = config.threads or os.cpu_count() or 1
    report = {"engine": config.engine,
              "config": {**asdict(config), "threads": threads, "model": "resnet18",
                         "stem": "cifar", "num_classes": NUM_CLASSES, "dtype": "float32"},
              "machine": None}
    with limit_threads(threads) as thread_counts, use_engine(config.engine):
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
    log(f"bench: each distinct layer alone ({config.engine} engine)")
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
    train = not config.eval_only
    if config.compile_time and config.engine == "fast":
        log("bench: Numba compile time, two fresh processes")
        report["compile"] = compile_times(threads)
    log("bench: peak memory, a fresh process")
    report["memory"] = peak_memory(config.width, config.batch_size, threads, train, config.engine)
    if config.vs_torch:
        log(f"bench: the same in PyTorch ({threads} threads), a fresh process")
        report["torch"] = torch_results(config.width, config.batch_size, config.steps,
                                        config.warmup, threads, train, config.torch_same_malloc)
        if config.rounds > 0:
            log(f"bench: {config.rounds} rounds of our step and PyTorch's in turn")
            report["rounds"] = alternating_rounds(config.width, config.batch_size, threads,
                                                  config.rounds, config.steps, config.warmup, train,
                                                  config.torch_same_malloc, config.engine)
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
