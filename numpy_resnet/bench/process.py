"""Measurements made in a fresh Python process: Numba's first-call compile time, peak memory,
and the rounds that alternate our step with PyTorch's.

A fresh process is the only place to see a compile from scratch (nothing loaded, an empty
NUMBA_CACHE_DIR) and a step's peak memory unmixed with whatever ran before it. `run_probe`
starts `python -c "<a probe call>"`; the probe prints its result as JSON on its last line.
`alternating_rounds` keeps a PyTorch process waiting beside this one and times the two in
turn, so that both see the same machine (see its docstring).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..engine import use_engine
from .timing import build_model, limit_threads, make_training_step, random_batch, run_times


# ----- peak memory ----------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _max_rss_kib() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss       # bytes on macOS, KiB on Linux


def peak_rss_of(fn) -> dict:
    """Run fn() once; MiB of resident memory at its peak above the resident memory before it.

    On Linux the peak (VmHWM) is first reset to the current resident size by writing 5 to
    /proc/self/clear_refs, so what the process held at some earlier peak does not hide the
    step's. Elsewhere the ru_maxrss delta, which reads 0 if an earlier peak was higher.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        can_reset = True
    except OSError:
        can_reset = False
    if can_reset:
        before, method = _proc_status_kib("VmRSS"), "VmHWM - VmRSS, peak reset by /proc/self/clear_refs"
        fn()
        peak = _proc_status_kib("VmHWM")
    else:
        before, method = _max_rss_kib(), "ru_maxrss delta"
        fn()
        peak = _max_rss_kib()
    return {"step_mib": (peak - before) / 1024, "before_mib": before / 1024,
            "peak_mib": peak / 1024, "method": method}


def run_probe(code: str, env: dict | None = None) -> dict:
    """Run `code` in a fresh Python and return the JSON object it prints last."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"bench: a measuring subprocess failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def first_step_probe(threads: int) -> None:
    """In a fresh process: import Numba, then time two training steps of a small ResNet-18 on
    the fast engine.

    The first step compiles (or loads from the cache) every Numba kernel it calls; the second
    runs them. compile_s = first - second; the kernels found are counted with their cache
    hits and misses, so the table can say which of the two happened.
    """
    start = time.perf_counter()
    import numba  # numpy_resnet imports it lazily, so this import is timed

    numba_import = time.perf_counter() - start
    model = build_model(width=4)
    step = make_training_step(model)
    x, y = random_batch(2, np.random.default_rng(0))
    with limit_threads(threads), use_engine("fast"):
        first = _seconds(lambda: step(x, y))
        second = _seconds(lambda: step(x, y))
    hits = misses = kernels = 0
    for name, module in list(sys.modules.items()):
        if name.startswith("numpy_resnet"):
            for value in vars(module).values():
                if isinstance(value, numba.core.dispatcher.Dispatcher) and value.signatures:
                    kernels += 1
                    hits += sum(value.stats.cache_hits.values())
                    misses += sum(value.stats.cache_misses.values())
    print(json.dumps({"numba_import_s": numba_import, "first_step_s": first, "second_step_s": second,
                      "compile_s": first - second, "kernels": kernels, "cache_hits": hits,
                      "cache_misses": misses}))


def compile_times(threads: int) -> dict:
    """Numba's first-call cost: compiled from scratch into an empty cache, then loaded from it."""
    code = f"from numpy_resnet.bench.process import first_step_probe; first_step_probe({threads})"
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        cold = run_probe(code, {"NUMBA_CACHE_DIR": cache})
        cached = run_probe(code, {"NUMBA_CACHE_DIR": cache})
    return {"from_scratch": cold, "cached": cached,
            "method": "fresh process, ResNet-18 width 4, batch 2: first step minus second step"}


def memory_probe(width: int, batch_size: int, threads: int, train: bool, engine: str = "fast") -> None:
    """In a fresh process: warm up on a batch of 2, then the peak of one full-size step."""
    model = build_model(width)
    rng = np.random.default_rng(0)
    small, full = random_batch(2, rng), random_batch(batch_size, rng)
    with limit_threads(threads), use_engine(engine):
        if train:
            step = make_training_step(model)
            step(*small)                                # kernels loaded, momentum buffers made
            memory = peak_rss_of(lambda: step(*full))
        else:
            model.eval()
            model(small[0])
            memory = peak_rss_of(lambda: model(full[0]))
    print(json.dumps(memory))


def peak_memory(width: int, batch_size: int, threads: int, train: bool, engine: str = "fast") -> dict:
    """memory_probe in a fresh process: the peak_rss_of of one full-size step (or forward)."""
    return run_probe(f"from numpy_resnet.bench.process import memory_probe; "
                     f"memory_probe({width}, {batch_size}, {threads}, {train}, {engine!r})")


def torch_results(width: int, batch_size: int, steps: int, warmup: int, threads: int,
                  train: bool, same_malloc: bool = False) -> dict:
    """torch_side.probe in a fresh process: PyTorch's step, inference and peak memory."""
    return run_probe(f"from numpy_resnet.bench.torch_side import probe; probe({width}, {batch_size}, "
                     f"{steps}, {warmup}, {threads}, {train}, {same_malloc})")


# ----- ours and PyTorch's in turn -------------------------------------------------------------
def alternating_rounds(width: int, batch_size: int, threads: int, rounds: int, steps: int,
                       warmup: int, train: bool, same_malloc: bool = False,
                       engine: str = "fast") -> dict:
    """Our training step (and inference), then PyTorch's, then ours again ... `rounds` times.

    A shared machine's speed drifts by tens of per cent within minutes (another job starts
    or stops), so two measurements a minute apart can disagree more than the two libraries
    do. Here each round times `steps` of ours, then `steps` of PyTorch's, seconds apart, in
    two processes of which only one runs at a time; a round's ratio compares like with like,
    and the spread of the rounds' ratios shows how much the machine moved.
    Returns, per kind: our and PyTorch's median ms in each round, and each round's ratio.
    """
    code = (f"from numpy_resnet.bench.torch_side import serve; "
            f"serve({width}, {batch_size}, {threads}, {same_malloc})")
    server = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)

    def torch_times(what: str) -> list[float]:
        server.stdin.write(f"{what} {steps} {warmup}\n")
        server.stdin.flush()
        answer = server.stdout.readline()
        if not answer:
            raise RuntimeError("bench: the PyTorch process of the alternating rounds stopped")
        return json.loads(answer)

    model = build_model(width)
    x, y = random_batch(batch_size, np.random.default_rng(0))
    step = make_training_step(model)
    ours = {"train": lambda: step(x, y), "eval": lambda: model(x)}
    kinds = ["train", "eval"] if train else ["eval"]
    result = {kind: {"ours_ms": [], "torch_ms": [], "ratios": []} for kind in kinds}
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("bench: the PyTorch process of the alternating rounds did not start")
        with limit_threads(threads), use_engine(engine):
            for _ in range(rounds):
                for kind in kinds:
                    model.train(kind == "train")
                    mine = 1e3 * float(np.median(run_times(ours[kind], steps, warmup)))
                    theirs = 1e3 * float(np.median(torch_times(kind)))
                    result[kind]["ours_ms"].append(mine)
                    result[kind]["torch_ms"].append(theirs)
                    result[kind]["ratios"].append(theirs / mine)    # images/s: ours / torch
    finally:
        if server.poll() is None:
            server.stdin.write("quit\n")
            server.stdin.close()
            server.wait(timeout=60)
    return {"rounds": rounds, "steps": steps, "batch_size": batch_size,
            **{("inference" if kind == "eval" else kind): r for kind, r in result.items()}}
