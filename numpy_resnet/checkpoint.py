"""Training checkpoints: everything needed to continue a run exactly where it stopped.

One `.npz` (written atomically, read with allow_pickle=False) holds
    model.<key>       the model's state_dict (weights and BatchNorm running statistics)
    optim.<key>       the optimizer's state (momentum buffers, learning rates)
    sched.<key>       the schedule's step counter
    meta              a JSON string: the run's config, the epoch reached and the history
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import serialization
from .nn.module import Module

CHECKPOINT_NAME = "checkpoint.npz"


def _prefixed(prefix: str, state) -> dict:
    return {f"{prefix}.{key}": np.asarray(value) for key, value in state.items()}


def _unprefixed(prefix: str, state) -> dict:
    start = len(prefix) + 1
    return {key[start:]: value for key, value in state.items() if key.startswith(prefix + ".")}


def save_checkpoint(path: str | os.PathLike, model: Module, optimizer=None, scheduler=None,
                    meta: dict | None = None) -> None:
    """Write model, optimizer and schedule state and a JSON `meta` dict to one .npz, atomically."""
    state = _prefixed("model", model.state_dict())
    if optimizer is not None:
        state.update(_prefixed("optim", optimizer.state_dict()))
    if scheduler is not None:
        state.update(_prefixed("sched", scheduler.state_dict()))
    state["meta"] = np.array(json.dumps(meta or {}))
    serialization.save(state, path)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """-> (arrays by key, meta dict). A folder means its checkpoint.npz."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = serialization.load(path)
    if "meta" not in state:
        raise ValueError(f"{path}: not a training checkpoint (no 'meta' entry); "
                         f"a weights file is read with numpy_resnet.serialization.load_into")
    try:
        meta = json.loads(str(state.pop("meta")))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: its 'meta' entry is not valid JSON ({error})") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its 'meta' entry is a JSON {type(meta).__name__}, "
                         f"expected an object")
    return state, meta


def restore(state: dict, model: Module, optimizer=None, scheduler=None) -> None:
    """Load the parts of a checkpoint into live objects; all or nothing.

    If a part is refused (say the optimizer's, after the model's loaded), every part is put
    back as it was before the call, so the objects are never left half restored.
    """
    parts = [(model, "model"), (optimizer, "optim"), (scheduler, "sched")]
    before = []
    try:
        for part, prefix in parts:
            if part is not None:
                before.append((part, part.state_dict()))
                part.load_state_dict(_unprefixed(prefix, state))
    except Exception:
        for part, saved in reversed(before):     # the scheduler sets the optimizer's lr: undo it first
            part.load_state_dict(saved)
        raise
