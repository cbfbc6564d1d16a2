"""The checks on a layer's constructor arguments, in one place.

A constructor checks each argument with one call and keeps what the call returns:

    self.stride = square(self, "stride", stride)            # k or (k, k), an int >= 1
    self.eps = positive_float(self, "eps", eps)

Every error is one line naming the layer, the argument, what was expected and what came:
`Conv2d: stride must be an int >= 1, got 0`. A wrong type (a float, a string) is a TypeError,
a value out of range a ValueError. As in PyTorch, a size given as a float is rejected, even
3.0, since 2.7 silently becoming 2 would hide a mistake; a bool is rejected too, although
Python counts it as an int.

The layers compute in float32 or float64 (FLOAT_DTYPES): the fast engine's kernels are
compiled for those two, and `Module.to` and the input checks accept no other.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _name(layer) -> str:
    """A layer's class name; a string is taken as the name itself (e.g. "Conv2d.to")."""
    return layer if isinstance(layer, str) else type(layer).__name__


def integer(layer, name: str, value, minimum: int | None = None) -> int:
    """value as an int (>= minimum, if given); a bool or a float is a TypeError."""
    expected = "an int" if minimum is None else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_name(layer)}: {name} must be {expected}, "
                        f"got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{_name(layer)}: {name} must be {expected}, got {value}")
    return int(value)


def positive_int(layer, name: str, value) -> int:
    return integer(layer, name, value, 1)


def non_negative_int(layer, name: str, value) -> int:
    return integer(layer, name, value, 0)


def square(layer, name: str, value, minimum: int = 1) -> int:
    """A square window's side: k or (k, k), an int >= minimum (only square ones are supported)."""
    if isinstance(value, (tuple, list)):
        sides = [integer(layer, name, side, minimum) for side in value]
        if len(sides) != 2 or sides[0] != sides[1]:
            raise ValueError(f"{_name(layer)}: only a square {name}, k or (k, k), is supported, "
                             f"got {value!r}")
        return sides[0]
    return integer(layer, name, value, minimum)


def _real(layer, name: str, value, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_name(layer)}: {name} must be a number {expected}, "
                        f"got {value!r} ({type(value).__name__})")
    return float(value)


def positive_float(layer, name: str, value) -> float:
    """A finite number > 0 (BatchNorm's eps)."""
    v = _real(layer, name, value, "> 0")
    if not 0 < v < math.inf:
        raise ValueError(f"{_name(layer)}: {name} must be a finite number > 0, got {value}")
    return v


def fraction(layer, name: str, value, below_one: bool = False) -> float:
    """A number in [0, 1], or in [0, 1) with below_one (a probability, a momentum)."""
    expected = "in [0, 1)" if below_one else "in [0, 1]"
    v = _real(layer, name, value, expected)
    if not (0 <= v < 1 if below_one else 0 <= v <= 1):
        raise ValueError(f"{_name(layer)}: {name} must be a number {expected}, got {value}")
    return v


def flag(layer, name: str, value) -> bool:
    """True or False, nothing that merely converts to one."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{_name(layer)}: {name} must be True or False, got {value!r}")
    return bool(value)


def choice(layer, name: str, value, choices: tuple[str, ...]) -> str:
    """One of a few strings."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{_name(layer)}: {name} must be one of {choices}, got {value!r}")
    return value


def float_dtype(layer, dtype) -> np.dtype:
    """float32 or float64, the dtypes the layers run in (given as np.float32, "float64", ...)."""
    expected = " or ".join(str(d) for d in FLOAT_DTYPES)
    try:
        resolved = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        resolved = None
    if resolved is None:
        raise TypeError(f"{_name(layer)}: dtype must be {expected}, got {dtype!r}")
    if resolved not in FLOAT_DTYPES:
        raise ValueError(f"{_name(layer)}: dtype must be {expected} (the dtypes the layers run "
                         f"in), got {resolved}")
    return resolved
