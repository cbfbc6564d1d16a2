"""Convert weights between PyTorch checkpoints (.pth) and our .npz files.

Our `state_dict` keys are torchvision's (timm's for resnet50d), so converting is a change of
container, not of names or layouts: Conv2d weights are (C_out, C_in/groups, k, k) on both
sides, Linear weights (out, in), and BatchNorm keeps running_mean, running_var and
num_batches_tracked.

    # torchvision weights -> NumPy
    torch_to_npz("resnet18-f37072fd.pth", "resnet18.npz")
    model = resnet18()
    numpy_resnet.serialization.load_into(model, "resnet18.npz")

    # and back, e.g. to evaluate a model trained here with PyTorch
    npz_to_torch("resnet18.npz", "resnet18.pth")
    torch_model.load_state_dict(torch.load("resnet18.pth"))

A .pth may hold a raw state_dict or a training checkpoint {"state_dict": ...} or
{"model": ...}; a "module." prefix (nn.DataParallel) is removed. It is read with
torch.load(weights_only=True), which refuses pickled code.

This is the only module that uses PyTorch; it is imported inside the functions, so the rest
of numpy_resnet works without it.
"""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .serialization import _one_line, atomic_write, load, save


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError("numpy_resnet.convert needs PyTorch to read or write .pth files "
                          "(pip install torch); nothing else in numpy_resnet does") from error
    return torch


def _unwrap(checkpoint: Mapping) -> Mapping:
    """The state_dict inside a checkpoint: itself, or its "state_dict" or "model" entry."""
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def _strip_prefix(state: Mapping, prefix: str = "module.") -> Mapping:
    if state and all(key.startswith(prefix) for key in state):
        return OrderedDict((key[len(prefix):], value) for key, value in state.items())
    return state


def torch_to_npz(pth_path: str | os.PathLike,
                 npz_path: str | os.PathLike) -> OrderedDict[str, np.ndarray]:
    """Read a PyTorch checkpoint, write its tensors to `npz_path`; returns the arrays.

    A file torch.load cannot read safely, or that holds anything but a state_dict of
    tensors, raises a one-line ValueError naming the file (and the key); nothing is written.
    """
    state = _strip_prefix(_unwrap(_read_pth(pth_path)))
    arrays = OrderedDict()
    for key, value in state.items():
        arrays[key] = _tensor_to_array(value, f"{pth_path}: {key!r}")
    save(arrays, npz_path)
    return arrays


def _read_pth(path: str | os.PathLike) -> Mapping:
    """torch.load(path) with weights_only=True: the checkpoint as a Mapping, or a ValueError."""
    torch = _import_torch()
    with open(path, "rb") as f:                   # missing, a folder: OSError naming the path
        head = f.read(8)
    if not head:
        raise ValueError(f"{path}: empty file (0 bytes), expected a PyTorch checkpoint")
    if not head.startswith((b"PK", b"\x80")):     # torch.save writes a zip, or once a pickle
        raise ValueError(f"{path}: not a PyTorch checkpoint (it starts with {head!r})")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f" ({refused.group(1)})" if refused else ""
        raise ValueError(f"{path}: holds Python objects{what} that torch.load(weights_only=True) "
                         f"refuses to unpickle; only tensors, dicts, lists and numbers are read") from error
    except Exception as error:                    # truncated, corrupt: many types, OSError too
        raise ValueError(f"{path}: not a PyTorch checkpoint torch.load can read "
                         f"({_one_line(error)})") from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: holds an object of type {type(checkpoint).__name__}, "
                         f"expected a state_dict")
    return checkpoint


def _tensor_to_array(value, where: str) -> np.ndarray:
    torch = _import_torch()
    if not torch.is_tensor(value):
        raise ValueError(f"{where} is of type {type(value).__name__}, expected a tensor")
    try:
        return value.detach().cpu().numpy()
    except (TypeError, RuntimeError) as error:    # bfloat16, sparse and quantized tensors
        raise ValueError(f"{where} is a {value.dtype} tensor NumPy cannot hold "
                         f"({_one_line(error)})") from error


def npz_to_torch(npz_path: str | os.PathLike, pth_path: str | os.PathLike) -> None:
    """Read our .npz, write a PyTorch state_dict (an OrderedDict of tensors) to `pth_path`.

    Bad files raise as in serialization.load; an array torch cannot hold raises a ValueError
    naming the file and key; nothing is written.
    """
    torch = _import_torch()
    state = OrderedDict()
    for key, array in load(npz_path).items():
        try:
            state[key] = torch.from_numpy(np.ascontiguousarray(array))
        except (TypeError, ValueError) as error:  # strings, dates, big-endian bytes
            raise ValueError(f"{npz_path}: {key!r} is a {array.dtype} array PyTorch cannot "
                             f"hold ({_one_line(error)})") from error
    with atomic_write(pth_path) as f:
        torch.save(state, f)
