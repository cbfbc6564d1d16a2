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

Every failure to read a file is one line naming it: an OSError for a missing file or a
folder, a ValueError for anything that is not an .npz of arrays (see load).
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
    """Read an .npz into {key: array}, in the order saved. Never unpickles.

    The one reader of .npz files (weights, checkpoints, conversion). A missing file or a
    folder raises the OSError that open() gives, which names the path; a file that is not an
    .npz of arrays (empty, truncated, corrupt, a lone .npy, a PyTorch .pth, a pickle, object
    arrays) raises a one-line ValueError naming the file and what is wrong with it.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            return _read_npz(f)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error


def _read_npz(f: BinaryIO) -> OrderedDict[str, np.ndarray]:
    """The arrays of an open .npz; ValueError saying what is wrong (the caller adds the path)."""
    head = f.read(8)
    f.seek(0)
    if not head.startswith(b"PK"):                # every zip archive, so every .npz, does
        raise ValueError(_not_a_zip(head))
    try:
        archive = zipfile.ZipFile(f)
    except Exception as error:                    # BadZipFile, or worse for a mangled directory
        raise ValueError(f"truncated or corrupt .npz archive ({_one_line(error)})") from error
    arrays = OrderedDict()
    with archive:
        for name in archive.namelist():
            if not name.endswith(".npy"):
                raise ValueError(_not_an_array(name))
            key = name[:-len(".npy")]
            try:
                with archive.open(name) as member:
                    arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
            except Exception as error:            # a bad CRC, a mangled header, pickled objects
                raise ValueError(f"array {key!r} cannot be read: {_one_line(error)}") from error
    return arrays


_TORCH_HINT = "convert a .pth with numpy_resnet.convert.torch_to_npz"


def _not_a_zip(head: bytes) -> str:
    if not head:
        return "empty file (0 bytes), expected an .npz archive"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, expected an .npz archive of named arrays (np.savez)"
    if head.startswith(b"\x80"):
        return f"a Python pickle (a PyTorch .pth in the legacy format?), expected an .npz; {_TORCH_HINT}"
    return f"not an .npz archive (it starts with {head!r})"


def _not_an_array(name: str) -> str:
    if name.endswith("data.pkl"):
        return f"a PyTorch .pth (it holds {name!r}), expected an .npz; {_TORCH_HINT}"
    return f"not an .npz of arrays: member {name!r} is not a .npy file"


def _one_line(error: BaseException) -> str:
    """The first line of an error's message, or its type when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def load_into(model: Module, path: str | os.PathLike, strict: bool = True) -> tuple[list, list]:
    """load(path) into `model` (all or nothing); returns (missing_keys, unexpected_keys).

    Errors name the file: a bad file as in load(), a bad state dict as in load_state_dict.
    """
    state = load(path)
    try:
        return model.load_state_dict(state, strict=strict)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from error
