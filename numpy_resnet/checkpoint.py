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
    meta = json.loads(str(state.pop("meta"))) if "meta" in state else {}
    return state, meta


def restore(state: dict, model: Module, optimizer=None, scheduler=None) -> None:
    """Load the parts of a checkpoint into live objects (each load is all or nothing)."""
    model.load_state_dict(_unprefixed("model", state))
    if optimizer is not None:
        optimizer.load_state_dict(_unprefixed("optim", state))
    if scheduler is not None:
        scheduler.load_state_dict(_unprefixed("sched", state))
