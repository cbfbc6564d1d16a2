"""NumPy's BLAS, seen through ctypes: how many threads it uses, and which kernels it chose.

The fast path runs its matrix products on our own worker threads (threads.py), one product
per worker, so BLAS itself must stay on one thread: two workers each starting two BLAS
threads would put four busy threads on two cores. NumPy has no API for this, so we call
OpenBLAS's own functions in the library NumPy loaded (as threadpoolctl does). With another
BLAS (Accelerate, MKL) these are no-ops and `describe()` says so.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
from functools import cache

import numpy as np

_PREFIXES = ("scipy_openblas_", "openblas_")        # NumPy's wheels, then a system OpenBLAS
_SUFFIXES = ("64_", "")


def _candidate_paths() -> list[str]:
    """Shared libraries with 'openblas' in their name: loaded ones first (Linux), then NumPy's."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            paths += re.findall(r"(/\S*openblas\S*\.(?:so|dylib)\S*)", f.read())
    except OSError:
        pass
    numpy_dir = os.path.dirname(np.__file__)
    for folder in (numpy_dir + ".libs", os.path.join(numpy_dir, ".dylibs")):
        paths += sorted(glob.glob(os.path.join(folder, "*openblas*")))
    return list(dict.fromkeys(paths))


@cache
def _openblas():
    """(library, symbol prefix, symbol suffix) of the OpenBLAS NumPy uses, or None."""
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                    return lib, prefix, suffix
    return None


def _function(name: str, restype=ctypes.c_int):
    found = _openblas()
    if found is None:
        return None
    lib, prefix, suffix = found
    function = getattr(lib, f"{prefix}{name}{suffix}")
    function.restype = restype
    return function


def get_num_threads() -> int | None:
    """OpenBLAS's thread count, or None if NumPy's BLAS is not an OpenBLAS we can reach."""
    function = _function("get_num_threads")
    return None if function is None else function()


def set_num_threads(n: int) -> bool:
    """Set OpenBLAS's thread count; False if that is not possible here."""
    function = _function("set_num_threads", restype=None)
    if function is None:
        return False
    function(ctypes.c_int(n))
    return True


def corename() -> str | None:
    """The kernels OpenBLAS chose for this CPU, e.g. 'SkylakeX' or 'Haswell' (None: unknown)."""
    function = _function("get_corename", restype=ctypes.c_char_p)
    return None if function is None else function().decode()


def describe() -> str:
    name = corename()
    if name is None:
        return "not OpenBLAS (thread count and kernels unknown)"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return (f"OpenBLAS, {name} kernels" + (f" (OPENBLAS_CORETYPE={forced})" if forced else "")
            + f", {get_num_threads()} thread(s) per call")
