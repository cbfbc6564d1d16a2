"""The optimizer contract: parameter groups, per-parameter state, a flat state_dict.

An optimizer holds `param_groups`, a list of dicts. Each has "params" (a list of
Parameters) and its own hyper-parameters ("lr", "weight_decay", ...), so one model can
train some parameters differently: no weight decay on biases, a smaller lr for a
pretrained backbone. `state[p]` is what it remembers about parameter p between steps
(momentum buffers, Adam's moments). Subclasses write one method, `update(p, state, group)`.

`state_dict()` is flat, {str: np.ndarray}, so it goes straight into an .npz file:

    np.savez("opt.npz", **opt.state_dict())
    opt.load_state_dict(np.load("opt.npz"))

    param_groups.0.lr              array(0.1)          a group's hyper-parameters
    param_groups.0.params          array([0, 1, 2])    its parameters, numbered in order
    state.1.momentum_buffer        (shape of param 1)  per-parameter state

To keep it beside the model in one checkpoint, prefix the keys ("optimizer.") and strip
the prefix before loading.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..nn.module import Parameter


class Optimizer:
    """Base class: `params` is an iterable of Parameters or of group dicts, as in torch.

    Group dicts look like {"params": [...], "lr": 0.01}; keys a group leaves out take the
    optimizer's defaults (its constructor arguments).
    """

    def __init__(self, params: Iterable, defaults: dict):
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict[Parameter, dict] = {}
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        name = type(self).__name__
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Parameter) else list(params)
        for p in group["params"]:
            if not isinstance(p, Parameter):
                raise TypeError(f"{name}: expected Parameters, got {type(p).__name__}")
        known = {id(p) for p in self._all_params()}
        if any(id(p) in known for p in group["params"]):
            raise ValueError(f"{name}: a parameter appears in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.check_hyperparameters(group)
        self.param_groups.append(group)

    def check_hyperparameters(self, group: dict) -> None:
        """Raise ValueError on a bad setting; subclasses add their own checks."""
        if group["lr"] < 0:
            raise ValueError(f"{type(self).__name__}: invalid lr {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"{type(self).__name__}: invalid weight_decay "
                             f"{group['weight_decay']}")

    def _all_params(self) -> list[Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    # ----- the training loop's two calls ----------------------------------------------
    def zero_grad(self) -> None:
        for p in self._all_params():
            p.grad[...] = 0

    def step(self) -> None:
        """Update every parameter with requires_grad=True from its .grad, in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    self.update(p, self.state.setdefault(p, {}), group)

    def update(self, p: Parameter, state: dict, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement update")

    # ----- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Hyper-parameters and state as a flat {str: np.ndarray} of copies."""
        index = {id(p): i for i, p in enumerate(self._all_params())}
        flat = {}
        for g, group in enumerate(self.param_groups):
            for key, value in group.items():
                if key != "params":
                    flat[f"param_groups.{g}.{key}"] = np.asarray(value)
            flat[f"param_groups.{g}.params"] = np.array([index[id(p)] for p in group["params"]])
        for i, p in enumerate(self._all_params()):
            for key, value in self.state.get(p, {}).items():
                flat[f"state.{i}.{key}"] = np.array(value, copy=True)
        return flat

    def load_state_dict(self, flat) -> None:
        """Restore from `state_dict()` (or np.load of it); all or nothing. The optimizer
        must have been built over the same parameters, grouped the same way."""
        flat = dict(flat)
        name = type(self).__name__
        self._check_same_groups(flat)
        params = self._all_params()
        hyper = [{} for _ in self.param_groups]
        state: dict[Parameter, dict] = {}
        for key, value in flat.items():
            kind, number, field = (key.split(".", 2) + ["", ""])[:3]
            if kind == "param_groups" and number.isdigit() and field:
                if field != "params":
                    hyper[int(number)][field] = _to_python(value)
            elif kind == "state" and number.isdigit() and int(number) < len(params) and field:
                p = params[int(number)]
                if np.ndim(value) and np.shape(value) != p.shape:
                    raise ValueError(f"{name}.load_state_dict: {key} has shape "
                                     f"{np.shape(value)}, parameter {number} has {p.shape}")
                state.setdefault(p, {})[field] = np.array(value, copy=True)
            else:
                raise ValueError(f"{name}.load_state_dict: unexpected key {key!r}")
        for group, saved in zip(self.param_groups, hyper, strict=True):
            group.update(saved)
        self.state = state


    def _check_same_groups(self, flat: dict) -> None:
        name = type(self).__name__
        n_groups = sum(key.startswith("param_groups.") and key.endswith(".params")
                       for key in flat)
        if n_groups != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: saved {n_groups} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        for g, group in enumerate(self.param_groups):
            saved = len(flat[f"param_groups.{g}.params"])
            if saved != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {g} saved {saved} "
                                 f"parameters, this one has {len(group['params'])}")


def _to_python(value: np.ndarray):
    """array(0.1) -> 0.1, array(True) -> True, array([0.9, 0.999]) -> (0.9, 0.999)."""
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else tuple(value.tolist())


def param_groups_no_decay(named_parameters: Iterable[tuple[str, Parameter]],
                          weight_decay: float) -> list[dict]:
    """Two groups: weights with `weight_decay`, and biases and norm parameters without.

    Decaying BatchNorm's scale and shift or any bias only fights the normalisation and
    rarely helps; the usual rule is "decay only the matrices and kernels" (ndim >= 2).
        optimizer = SGD(param_groups_no_decay(model.named_parameters(), 5e-4), lr=0.1)
    """
    decay, no_decay = [], []
    for name, p in named_parameters:
        if p.data.ndim <= 1 or name.endswith("bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]
