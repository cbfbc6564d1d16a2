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
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .serialization import atomic_write, load, save


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
    """Read a PyTorch checkpoint, write its tensors to `npz_path`; returns the arrays."""
    torch = _import_torch()
    checkpoint = torch.load(pth_path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"torch_to_npz: {pth_path} holds a {type(checkpoint).__name__}, "
                        f"expected a state_dict")
    state = _strip_prefix(_unwrap(checkpoint))
    arrays = OrderedDict()
    for key, value in state.items():
        if not torch.is_tensor(value):
            raise TypeError(f"torch_to_npz: {key!r} in {pth_path} is a {type(value).__name__}, "
                            f"expected a tensor")
        arrays[key] = value.detach().cpu().numpy()
    save(arrays, npz_path)
    return arrays


def npz_to_torch(npz_path: str | os.PathLike, pth_path: str | os.PathLike) -> None:
    """Read our .npz, write a PyTorch state_dict (an OrderedDict of tensors) to `pth_path`."""
    torch = _import_torch()
    state = OrderedDict((key, torch.from_numpy(np.ascontiguousarray(array)))
                        for key, array in load(npz_path).items())
    with atomic_write(pth_path) as f:
        torch.save(state, f)
