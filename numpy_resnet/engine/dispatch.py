"""Which code answers a call: the layer's own, or the fast engine's twin of it.

Every class-defined `forward` and `backward` of a Module asks `dispatch` first
(nn.hooks.set_dispatcher). A twin is registered for one exact class; it answers

    forward   when the fast engine is on and the module runs its class's code as registered:
              its type is that class (not a subclass), the class's forward and backward are
              the ones the twin was written for, and the instance overrides neither;
    backward  when the module's last forward was the twin's: that forward left a record
              here, and the textbook's forward (which keeps its own cache) removed it.

A twin may decline a call it cannot take (it returns NotImplemented): the layer's code runs.
The records live here, in a table keyed weakly by module, not on the layers.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

from ..nn import hooks as nn_hooks

ENGINES = ("fast", "reference")
_engine = "fast"

# module -> what its twin's forward kept for the twin's backward
records: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass
class Twin:
    """The fast forward and backward of one class: forward(module, *args), backward(module, *args)."""
    cls: type
    forward: Callable
    backward: Callable
    class_forward: Callable             # the class's methods the twin computes the same as
    class_backward: Callable


_twins: dict[type, Twin] = {}


def twin(cls: type):
    """Class decorator: `@twin(Conv2d) class _Conv: forward(...), backward(...)` registers them."""
    def register(impl):
        _twins[cls] = Twin(cls, impl.forward, impl.backward, cls.__dict__["forward"],
                           cls.__dict__["backward"])
        return impl
    return register


def runs_as_written(module, cls: type | None = None) -> bool:
    """Does `module` run exactly the class code a twin was registered for?"""
    t = _twins.get(type(module))
    return (t is not None and (cls is None or t.cls is cls)
            and type(module).__dict__.get("forward") is t.class_forward
            and type(module).__dict__.get("backward") is t.class_backward
            and "forward" not in module.__dict__ and "backward" not in module.__dict__)


def fusable(*modules) -> bool:
    """Can these layers run inside one fused pass? Fast engine, as written, and no hooks
    (a fused pass does not call the layers one by one, so there would be nowhere to run them)."""
    return _engine == "fast" and all(runs_as_written(m) and not m.has_hooks() for m in modules)


def dispatch(module, method: str, args: tuple, kwargs: dict):
    t = _twins.get(type(module))
    if t is None:
        return NotImplemented
    if method == "forward":
        if _engine != "fast" or not runs_as_written(module):
            records.pop(module, None)
            return NotImplemented
        result = t.forward(module, *args, **kwargs)
        if result is NotImplemented:
            records.pop(module, None)
        return result
    if module not in records:
        return NotImplemented
    return t.backward(module, *args, **kwargs)


class use_engine:
    """use_engine("fast" | "reference"): set the engine now; as a context manager, restore
    the previous one on leaving the block."""

    def __init__(self, name: str):
        global _engine
        if name not in ENGINES:
            raise ValueError(f"use_engine: expected one of {ENGINES}, got {name!r}")
        self.previous, _engine = _engine, name

    def __enter__(self) -> "use_engine":
        return self

    def __exit__(self, *exc) -> None:
        global _engine
        _engine = self.previous


def get_engine() -> str:
    """The engine that runs: "fast" or "reference"."""
    return _engine


nn_hooks.set_dispatcher(dispatch)
