"""How Module runs a call: the hooks around it, and the one door for another implementation.

Module wraps each subclass's `forward` and `backward` once, when the class is defined
(`Module.__init_subclass__` calls `forward_entry` and `backward_entry`), so that:

    - backward hooks run on every `layer.backward(dy)`, whoever calls it (forward hooks run
      in `Module.__call__`, as in PyTorch);
    - a dispatcher, if one is installed (`set_dispatcher`; numpy_resnet.engine installs its
      fast twins), is asked first and may answer the call in place of the method.

Only the method the module's own class answers with is wrapped this way: a `super()` call
inside it runs the parent's code directly, and an instance attribute `layer.forward = f` or a
method patched on the class is never wrapped at all, so it runs as written.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Callable

# The one function that may run a call in place of the code in nn/ (see set_dispatcher).
_dispatcher: Callable | None = None


def set_dispatcher(dispatcher: Callable | None) -> Callable | None:
    """Install `dispatcher(module, method, args, kwargs)`; returns the previous one.

    It is asked first on every call of a Module's class-defined `forward` or `backward`
    (method is "forward" or "backward") and either returns the call's result or
    NotImplemented, in which case the method itself runs. None: the methods always run.
    """
    global _dispatcher
    previous, _dispatcher = _dispatcher, dispatcher
    return previous


class RemovableHandle:
    """What register_*_hook returns: `handle.remove()` takes the hook off (as in PyTorch)."""

    _next_id = 0

    def __init__(self, hooks: OrderedDict):
        self.hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _outermost(module, method: str, fn: Callable) -> bool:
    """Is `fn` the method the module's own class answers with (not a super() call inside it)?"""
    return getattr(getattr(type(module), method, None), "__wrapped__", None) is fn


def forward_entry(fn: Callable) -> Callable:
    """A subclass's forward, as Module runs it: the dispatcher may answer in its place."""

    @functools.wraps(fn)
    def forward(self, *args, **kwargs):
        if _dispatcher is not None and _outermost(self, "forward", fn):
            result = _dispatcher(self, "forward", args, kwargs)
            if result is not NotImplemented:
                return result
        return fn(self, *args, **kwargs)

    return forward


def backward_entry(fn: Callable) -> Callable:
    """A subclass's backward, as Module runs it: the dispatcher may answer, then the hooks."""

    @functools.wraps(fn)
    def backward(self, *args, **kwargs):
        if not _outermost(self, "backward", fn):            # super().backward(...) inside it
            return fn(self, *args, **kwargs)
        if self._backward_pre_hooks and args:
            for hook in list(self._backward_pre_hooks.values()):
                result = hook(self, (args[0],))
                if result is not None:
                    args = (result[0] if isinstance(result, tuple) else result, *args[1:])
        grad_input = NotImplemented
        if _dispatcher is not None:
            grad_input = _dispatcher(self, "backward", args, kwargs)
        if grad_input is NotImplemented:
            grad_input = fn(self, *args, **kwargs)
        grad_output = args[0] if args else None             # a loss's backward takes none
        for hook in list(self._backward_hooks.values()):
            result = hook(self, (grad_input,), (grad_output,))
            if result is not None:
                grad_input = result[0] if isinstance(result, tuple) else result
        return grad_input

    return backward
