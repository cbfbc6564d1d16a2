"""Saving and loading weights as `.npz`: a zip of `.npy` arrays, one per `state_dict` key.

    save(model, "resnet18.npz")           # or save(model.state_dict(), ...)
    state = load("resnet18.npz")          # {"conv1.weight": array, ...}, in saved order
    load_into(model, "resnet18.npz")      # load() then model.load_state_dict()

Two safety habits:
  * atomic writes: the file is written under a temporary name in the same directory and
    renamed over `path` (`os.replace`) only once complete, so a crash or an error leaves
    either the old file or the new one, never half of one;
  * no pickle: arrays are written and read with allow_pickle=False, so loading a file
    cannot run code (unlike torch.load of an untrusted checkpoint).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np

from .nn.module import Module


def _default_file_mode() -> int:
    """The mode open() would give a new file: 0666 minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to `path` for writing; rename it to `path` on success.

    On any error the temporary file is removed and `path` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                    suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())                 # the bytes are on disk before the rename
        os.chmod(tmp_path, _default_file_mode())  # mkstemp made it private (0600)
        os.replace(tmp_path, path)               # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _as_arrays(model_or_state: Module | Mapping) -> OrderedDict[str, np.ndarray]:
    state = model_or_state.state_dict() if isinstance(model_or_state, Module) else model_or_state
    arrays = OrderedDict()
    for key, value in state.items():
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(f"save: {key!r} is not a numeric array (dtype {array.dtype}); "
                            f"only arrays can be saved without pickle")
        arrays[str(key)] = array
    return arrays


def save(model_or_state: Module | Mapping, path: str | os.PathLike) -> None:
    """Write a model's state_dict (or any dict of arrays) to `path` as an .npz, atomically.

    The file is exactly what np.savez writes: member "<key>.npy" for each key.
    """
    arrays = _as_arrays(model_or_state)
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def load(path: str | os.PathLike) -> OrderedDict[str, np.ndarray]:
    """Read an .npz into {key: array}, in the order saved. Never unpickles."""
    with np.load(path, allow_pickle=False) as archive:
        return OrderedDict((key, archive[key]) for key in archive.files)


def load_into(model: Module, path: str | os.PathLike, strict: bool = True) -> tuple[list, list]:
    """load(path) into `model` (all or nothing); returns (missing_keys, unexpected_keys)."""
    return model.load_state_dict(load(path), strict=strict)
