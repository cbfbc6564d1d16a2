"""Parameter, Module and Sequential: the contract every layer keeps.

A layer is a `Module` with two methods written by hand:

    y  = layer.forward(x)     computes the output and keeps on `self` what backward needs
    dx = layer.backward(dy)   returns dL/dx and *adds* dL/dW into each `Parameter.grad`

There is no autograd: a model's `backward` calls its children's `backward` in reverse order.
Names follow `torch.nn` so that habits carry over both ways, hooks included:

    layer.register_forward_pre_hook(hook)     hook(module, args) -> None or new args
    layer.register_forward_hook(hook)         hook(module, args, output) -> None or new output
    layer.register_full_backward_pre_hook(hook)  hook(module, grad_output) -> None or new
                                              grad_output
    layer.register_full_backward_hook(hook)   hook(module, grad_input, grad_output) -> None or
                                              new grad_input  (tuples, as in PyTorch)

Each returns a handle whose `.remove()` takes the hook off. Forward hooks run when the layer
is called, `layer(x)`; backward hooks run on every `layer.backward(dy)`, since Module wraps
each subclass's `forward` and `backward` once, when the class is defined (`__init_subclass__`).

That wrapper is also the one door through which another implementation of the same layer
may answer a call: `hooks.set_dispatcher` installs one (numpy_resnet.engine installs its fast
twins, and says there when it may and may not), and the code in nn/ never imports it. A subclass
that defines forward or backward, an instance attribute `layer.forward = f`, or a class
method patched in place always runs as written.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from typing import Callable, Iterable, Iterator

import numpy as np

from .arguments import FLOAT_DTYPES, float_dtype
from .hooks import RemovableHandle, backward_entry, forward_entry

DEFAULT_DTYPE = np.float32

class Parameter:
    """A trainable array and its gradient.

    data: the values, any shape.   grad: dL/d(data), same shape, accumulated by `backward`.
    requires_grad=False freezes it: optimizers skip it (fine-tuning).
    """

    def __init__(self, data: np.ndarray, requires_grad: bool = True):
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data)
        self.requires_grad = requires_grad

    @property
    def shape(self) -> tuple:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and model.

    Attributes that are `Parameter`s or `Module`s are registered automatically, in the
    order they are assigned (as in PyTorch); buffers (running statistics) are registered
    with `register_buffer`. That order gives the `state_dict` keys, e.g. `layer1.0.bn1.weight`.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__:
            cls.forward = forward_entry(cls.__dict__["forward"])
        if "backward" in cls.__dict__:
            cls.backward = backward_entry(cls.__dict__["backward"])

    # ----- registration -------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() first")
        if name in self._buffers:
            self._buffers[name] = value
            return
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # only called when normal lookup fails: buffers live in their table
        buffers = self.__dict__.get("_buffers", {})
        if name in buffers:
            return buffers[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def register_buffer(self, name: str, array: np.ndarray) -> None:
        """A saved array that is not trained (e.g. BatchNorm's running_mean)."""
        self._buffers[name] = array

    # ----- forward and backward ------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        """y = layer(x): forward, with the forward hooks around it (as in PyTorch)."""
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ----- hooks ---------------------------------------------------------------------
    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, args) runs before forward; it may return new args."""
        return self._add_hook(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, args, output) runs after forward; it may return a new output."""
        return self._add_hook(self._forward_hooks, hook)

    def register_full_backward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, grad_output) runs before backward, grad_output = (dL/dy,); it may
        return a new grad_output."""
        return self._add_hook(self._backward_pre_hooks, hook)

    def register_full_backward_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, grad_input, grad_output) runs after backward, with
        grad_input = (dL/dx,) and grad_output = (dL/dy,); it may return a new grad_input."""
        return self._add_hook(self._backward_hooks, hook)

    @staticmethod
    def _add_hook(hooks: OrderedDict, hook: Callable) -> RemovableHandle:
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def has_hooks(self) -> bool:
        return bool(self._forward_pre_hooks or self._forward_hooks or self._backward_pre_hooks
                    or self._backward_hooks)

    def _saved(self, attr: str = "cache"):
        """What forward kept for backward; a clear error if forward has not run."""
        value = self.__dict__.get(attr)
        if value is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        return value

    # ----- walking the tree ----------------------------------------------------------
    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from self._modules.items()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for module_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                yield (f"{module_name}.{name}" if module_name else name), b

    # ----- modes, gradients, dtype -----------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0

    def to(self, dtype) -> "Module":
        """Cast parameters, gradients and floating buffers, e.g. `model.to(np.float64)`.

        Only float32 and float64: the fast engine's kernels are compiled for those two.
        """
        dtype = float_dtype(f"{type(self).__name__}.to", dtype)
        for module in self.modules():
            for p in module._parameters.values():
                p.data = p.data.astype(dtype)
                p.grad = p.grad.astype(dtype)
            for name, b in module._buffers.items():
                if np.issubdtype(b.dtype, np.floating):
                    module._buffers[name] = b.astype(dtype)
        return self

    @property
    def dtype(self) -> np.dtype:
        for p in self.parameters():
            return p.data.dtype
        return np.dtype(DEFAULT_DTYPE)

    # ----- state_dict ----------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers as NumPy copies, under PyTorch's key names."""
        state = OrderedDict()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                state[prefix + name] = p.data.copy()
            for name, b in module._buffers.items():
                state[prefix + name] = np.array(b, copy=True)
        return state

    def load_state_dict(self, state, strict: bool = True) -> tuple[list, list]:
        """Copy arrays from `state` into this module; all or nothing.

        Every value is checked and cast to its target's dtype before the first one is
        written. Missing and unexpected keys (when strict), wrong shapes and values the cast
        would change (strings, bools, complex numbers, 1e60 into float32, 3.7 into an integer
        buffer) are all listed in one ValueError, and nothing is changed. Rounding, as from
        float64 to float32, is allowed. A missing `num_batches_tracked` is left as it is,
        as PyTorch does for state dicts saved before BatchNorm counted its batches.
        Returns (missing_keys, unexpected_keys) as PyTorch does.
        """
        targets = {}                                    # key -> (module, name, current array)
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                targets[prefix + name] = (module, name, p.data)
            for name, b in module._buffers.items():
                targets[prefix + name] = (module, name, b)
        missing = [key for key, (_, name, _) in targets.items()
                   if key not in state and name not in _OPTIONAL_BUFFERS]
        unexpected = [key for key in state if key not in targets]

        converted, bad_values = {}, []
        for key, (_, _, current) in targets.items():
            if key in state:
                try:
                    converted[key] = _cast_exactly(state[key], current)
                except ValueError as error:
                    bad_values.append(f"{key!r} {error}")
        problems = []
        if missing and strict:
            problems.append(f"missing keys: {_first_few([repr(key) for key in missing])}")
        if unexpected and strict:
            problems.append(f"unexpected keys: {_first_few([repr(key) for key in unexpected])}")
        if bad_values:
            problems.append(_first_few(bad_values, separator="; "))
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems)
                             + "; nothing was loaded")

        for key, array in converted.items():           # nothing below can fail
            module, name, _ = targets[key]
            if name in module._parameters:
                module._parameters[name].data = array
            else:
                module._buffers[name] = array
        return missing, unexpected

    # ----- printing --------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if not self._modules:
            return lines[0] + ")"
        for name, child in self._modules.items():
            child_lines = repr(child).split("\n")
            lines.append(f"  ({name}): " + "\n  ".join(child_lines))
        return "\n".join(lines) + "\n)"


# ----- load_state_dict's checks ----------------------------------------------------------
# Buffers a state dict may lack: torchvision saves from before BatchNorm counted its batches.
_OPTIONAL_BUFFERS = ("num_batches_tracked",)


def _cast_exactly(value, like: np.ndarray) -> np.ndarray:
    """`value` as a new array of `like`'s shape and dtype; ValueError saying why not.

    Real numbers may be rounded into a float dtype but not overflow to inf; into any other
    dtype (num_batches_tracked's int64) every value must come through unchanged.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:      # e.g. a ragged list
        raise ValueError(f"is not an array ({error})") from error
    if array.shape != like.shape:
        raise ValueError(f"shape mismatch: expected {like.shape}, got {array.shape}")
    if array.dtype.kind not in "iuf" and array.dtype != like.dtype:
        raise ValueError(f"holds {_KIND_NAMES.get(array.dtype.kind, 'values')} ({array.dtype}), "
                         f"expected real numbers for {like.dtype}")
    with np.errstate(all="ignore"):               # the checks below report what the cast did
        cast = array.astype(like.dtype)
    if like.dtype.kind == "f":
        changed = np.isfinite(array) & ~np.isfinite(cast)
    else:
        changed = cast != array
    if changed.any():
        before, after = array[changed].flat[0].item(), cast[changed].flat[0].item()
        raise ValueError(f"holds {before!r}, which would become {after!r} as {like.dtype}")
    return cast


_KIND_NAMES = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes",
               "O": "Python objects", "M": "dates", "m": "time spans", "V": "raw records"}


def _first_few(items: list[str], limit: int = 5, separator: str = ", ") -> str:
    """'a, b, c' or, for a long list, its first `limit` items and how many more."""
    if len(items) <= limit:
        return separator.join(items)
    return separator.join(items[:limit]) + f" and {len(items) - limit} more"


class ModuleList(Module):
    """Modules held by index, as torch.nn.ModuleList: keys 0, 1, ...; no forward of its own."""

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        for module in modules:
            self.append(module)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module):
        setattr(self, str(len(self)), module)
        return self


class Sequential(ModuleList):
    """Children applied in order; backward walks them in reverse.

    y = f_n(...f_2(f_1(x)))      dL/dx = f_1'ᵀ(f_2'ᵀ(...f_n'ᵀ(dL/dy)))
    """

    def __init__(self, *modules: Module):
        super().__init__(modules)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, grad_output):
        for module in reversed(self._modules.values()):
            grad_output = module.backward(grad_output)
        return grad_output


def check_input(module: Module, x, ndim: int | None = 4, channels: int | None = None,
                axis: int = 1) -> None:
    """Raise a ValueError naming the layer, what it expected and what it got."""
    name = repr(module).split("\n")[0]
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a NumPy array, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        expected = "(N, C, H, W)" if ndim == 4 else f"{ndim} dimensions"
        raise ValueError(f"{name}: expected input {expected}, got shape {x.shape}")
    if channels is not None and x.shape[axis] != channels:
        dims = ["N", str(channels), "H", "W"] if ndim == 4 else ["N", str(channels)]
        raise ValueError(f"{name}: expected input ({', '.join(dims)}), got {x.shape}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a floating-point input, float32 or float64, "
                         f"got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name}: expected a non-empty input, got shape {x.shape}")
    dtype = module.dtype
    if module._parameters and x.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {dtype}, got {x.dtype} "
                         f"(convert with x.astype(np.{dtype}) or module.to(np.{x.dtype}))")


def check_grad(module: Module, grad_output, shape: tuple) -> None:
    """Raise a ValueError naming the layer unless grad_output is a float array shaped like the
    forward's output, `shape` (a loss, whose output is a number, also takes a number)."""
    name = repr(module).split("\n")[0]
    if shape == () and isinstance(grad_output, numbers.Real) and not isinstance(grad_output, bool):
        return
    if not isinstance(grad_output, np.ndarray) or grad_output.shape != tuple(shape):
        got = getattr(grad_output, "shape", type(grad_output).__name__)
        raise ValueError(f"{name}: backward expected a gradient shaped like the forward's "
                         f"output, {tuple(shape)}, got {got}")
    if grad_output.dtype.kind != "f":
        raise ValueError(f"{name}: backward expected a floating-point gradient, "
                         f"got dtype {grad_output.dtype}")
