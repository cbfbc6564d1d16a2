"""Keep freed memory for reuse instead of handing it back to the system (glibc's malloc).

A training step allocates and frees the same large arrays every time: activations, their
gradients, the outputs of every layer. By default glibc returns any block larger than
32 MiB (and the free top of its heap) to the system at once, so the next step asks for it
again and the kernel must fault in and zero every page anew, thousands of page faults a
step (docs/performance.md). So we raise glibc's two thresholds (mallopt), once, when the fast
path first runs. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1           # keep up to this much free memory at the top of the heap
M_MMAP_THRESHOLD = -3           # blocks larger than this get their own mmap, unmapped on free
KEEP_BYTES = 1 << 30

_result: bool | None = None     # what the first call found; later calls return it at once


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds to 1 GiB (once); False where there is no glibc."""
    global _result
    if _result is None:
        _result = _mallopt_thresholds()
    return _result


def _mallopt_thresholds() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
