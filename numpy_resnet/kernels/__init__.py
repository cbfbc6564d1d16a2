"""Kernels: im2col / col2im in a readable NumPy version and a fast Numba twin, and the fast path.

Two backends, chosen with `set_backend` ("numba", the default, or "numpy"), or inside a
`with use_backend("numpy"):` block:

    "numpy"   every layer runs its readable code in nn/, and im2col / col2im are
              im2col_numpy.py's: the reference, slow and obviously correct.
    "numba"   im2col / col2im are im2col_numba.py's compiled twins; Conv2d, BatchNorm2d and
              ReLU run the fast path instead: channels-last memory, cache-sized chunks and
              one-pass loops on every core (conv_nhwc.py, batchnorm_nhwc.py, elementwise.py,
              threads.py), Winograd's F(2x2, 3x3) for 3x3 stride-1 convs
              with 16 channels or more (winograd.py), and the blocks' conv -> BatchNorm ->
              ReLU in fewer passes (fused.py). Tests check that both backends compute the
              same numbers.

Numba is imported on first use (the layers import the fast-path modules when they first
run them), so `import numpy_resnet` stays fast.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .conv_naive import conv2d_naive
from .im2col_numpy import col2im_numpy, conv_output_size, im2col_numpy

BACKENDS = ("numba", "numpy")
# WHEN STUBBED conv,batchnorm,activations: _backend = "numpy"
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


def fast_path(module, base: type) -> bool:
    """Should `module` (an instance of `base` or a subclass) run the fast channels-last kernels?

    Yes with the "numba" backend, unless its class redefines base's forward or backward: a
    subclass that does expects what the readable forward keeps for backward.
    """
    cls = type(module)
    return (_backend == "numba" and cls.forward is base.forward and cls.backward is base.backward)


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


__all__ = ["fast_path", "conv2d_naive", "im2col", "col2im", "im2col_numpy", "col2im_numpy",
           "conv_output_size", "set_backend", "get_backend", "use_backend", "BACKENDS", "workspace"]
