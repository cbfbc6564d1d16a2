"""The fast path's worker threads: split a range of work into one part per core.

    parallel(fn, n)   calls fn(worker, lo, hi) for contiguous parts [lo, hi) of range(n),
                      one part per worker, all at once, and returns their results in order

Worker 0 is the calling thread; the others come from a pool made on first use. The work
runs in NumPy (which releases the GIL inside matrix products) and in Numba kernels compiled
with nogil=True, so the workers really do run side by side. Each worker's BLAS calls run on
that worker alone: the pool sets OpenBLAS to one thread (blas.py). This is the fast path's
only source of parallelism, so no two thread pools ever compete for the cores.

`set_num_threads(n)` chooses the number of workers (default: the cores this process may
use), like `torch.set_num_threads`.

Handing work to a pool thread and waiting for it (waking the thread, then the caller) costs
about as long as one ReLU over 4 MiB (docs/performance.md). So a caller says how much work
one unit of its range is (`grain`: units per worker at least), and small arrays run on
fewer workers: ReLU and BatchNorm give each worker at least GRAIN values, so on two
workers an array under 2·GRAIN values runs on the calling thread alone.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from . import blas, memory


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                          # not Linux
        return os.cpu_count() or 1


# values of an elementwise pass worth a worker: below about 1M float32 values (4 MiB), handing
# half to a second thread costs as much as it saves (docs/performance.md)
GRAIN = 1 << 20
_num_threads = _available_cores()
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_scratch: dict = {}


def get_num_threads() -> int:
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use n workers (n >= 1) from now on."""
    global _num_threads, _pool
    if int(n) < 1:
        raise ValueError(f"set_num_threads: expected at least 1 thread, got {n}")
    with _lock:
        _num_threads = int(n)
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
    blas.set_num_threads(1)                         # the workers are the parallelism


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            blas.set_num_threads(1)                 # one BLAS thread per worker
            _pool = ThreadPoolExecutor(max_workers=_num_threads - 1,
                                       thread_name_prefix="numpy_resnet")
        return _pool


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """range(n) as `parts` contiguous (lo, hi) pieces whose sizes differ by at most one."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def parallel(fn, n: int, grain: int = 1) -> list:
    """[fn(worker, lo, hi) for each worker's part of range(n)], the parts run concurrently.

    grain: the fewest units of range(n) worth giving a worker (fewer workers if n is small).
    """
    memory.keep_freed_memory()                      # the first time only: see memory.py
    workers = max(1, min(_num_threads, n // max(grain, 1)))
    pieces = split(n, workers)
    if workers == 1:
        return [fn(0, *pieces[0])]
    futures = [_get_pool().submit(fn, w, lo, hi) for w, (lo, hi) in enumerate(pieces) if w > 0]
    try:
        first = fn(0, *pieces[0])
    finally:
        wait(futures)                               # no worker is left writing when we return
    return [first] + [f.result() for f in futures]


def scratch(worker: int, name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialised buffer private to one worker, reused by every call with the same name.

    One flat array per (worker, name, dtype) that grows to the largest shape asked for, so
    layers of different sizes share it instead of each keeping its own.
    """
    size = int(np.prod(shape))
    key = (worker, name, np.dtype(dtype).str)
    buffer = _scratch.get(key)
    if buffer is None or buffer.size < size:
        buffer = _scratch[key] = np.empty(size, dtype)
    return buffer[:size].reshape(shape)


# ----- what the workers' GEMMs share: per-worker sums, added at the end ---------------------
def add_product(worker: int, total: np.ndarray, first: bool, a: np.ndarray, b: np.ndarray) -> None:
    """total = a · b for a worker's first chunk, total += a · b for the others."""
    if first:
        np.matmul(a, b, out=total)
    else:
        total += np.matmul(a, b, out=scratch(worker, "dW", total.shape, total.dtype))


def sum_over_workers(results: list, need_bias: bool, dtype) -> tuple:
    """The workers' (dW part, db part in float64 or None) -> (Σ dW, Σ db in dtype or None)."""
    dW = results[0][0]
    for part, _ in results[1:]:
        dW += part
    db = sum(r[1] for r in results).astype(dtype) if need_bias else None
    return dW, db
