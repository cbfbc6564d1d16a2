"""One seeded random generator for the whole library, like `torch.manual_seed`.

Weight initialisation, dropout masks and data augmentation draw from `get_rng()`, so
`manual_seed(0)` makes a run repeatable. `state()` / `set_state()` save and restore it
(checkpoints, gradient checks that must see the same dropout mask twice).
"""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the library's generator; returns it."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def get_rng() -> np.random.Generator:
    return _rng


def state() -> dict:
    """The generator's state, a plain dict (JSON-friendly)."""
    return _rng.bit_generator.state


def set_state(saved: dict) -> None:
    _rng.bit_generator.state = saved
