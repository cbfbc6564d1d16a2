"""Kernels: im2col / col2im in a readable NumPy version and a fast Numba twin.

`im2col` and `col2im` dispatch to the backend chosen with `set_backend` ("numba", the
default, or "numpy"); `use_backend("numpy")` switches inside a `with` block. Numba is
imported on first use, so `import numpy_resnet` stays fast.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .conv_naive import conv2d_naive
from .im2col_numpy import col2im_numpy, conv_output_size, im2col_numpy

BACKENDS = ("numba", "numpy")
# WHEN STUBBED conv: _backend = "numpy"
_backend = "numba"


def set_backend(name: str) -> None:
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"set_backend: expected one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    return _backend


_workspaces: dict = {}


def workspace(name: str, shape: tuple, dtype) -> np.ndarray:
    """A scratch array that is reused by every call asking for the same name, shape and dtype.

    For temporaries that live only inside one function call (e.g. dcols in Conv2d.backward):
    allocating them fresh each time costs more than filling them.
    """
    key = (name, tuple(shape), np.dtype(dtype).str)
    buffer = _workspaces.get(key)
    if buffer is None:
        buffer = _workspaces[key] = np.empty(shape, dtype)
    return buffer


@contextmanager
def use_backend(name: str):
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def im2col(x, kh, kw, stride, padding, out=None):
    """x: (N, C, H, W) -> cols: (C·kh·kw, N·H_out·W_out) with the current backend.

    out: a buffer of the right shape and dtype to write into (the Numba backend reuses it,
    which saves allocating and page-faulting a large array on every call).
    """
    if _backend == "numba":
        from .im2col_numba import im2col_numba
        return im2col_numba(x, kh, kw, stride, padding, out)
    return im2col_numpy(x, kh, kw, stride, padding)


def col2im(cols, x_shape, kh, kw, stride, padding):
    """cols: (C·kh·kw, N·H_out·W_out) -> dx: (N, C, H, W) with the current backend."""
    if _backend == "numba":
        from .im2col_numba import col2im_numba
        return col2im_numba(cols, x_shape, kh, kw, stride, padding)
    return col2im_numpy(cols, x_shape, kh, kw, stride, padding)


__all__ = ["conv2d_naive", "im2col", "col2im", "im2col_numpy", "col2im_numpy",
           "conv_output_size", "set_backend", "get_backend", "use_backend", "BACKENDS", "workspace"]
