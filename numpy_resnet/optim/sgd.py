"""SGD with momentum, Nesterov momentum, dampening and L2 weight decay: torch.optim.SGD.

For each parameter p with gradient ∇L(p), learning rate η, momentum μ, dampening τ and
weight decay λ:

    g = ∇L(p) + λ·p                 weight decay: the gradient of (λ/2)·|p|²
    b = g                           on the first step
    b = μ·b + (1 − τ)·g             on later steps (b: the momentum buffer)
    g = g + μ·b   if nesterov,  else  g = b
    p = p − η·g

With μ = 0 this is plain gradient descent, p = p − η·(∇L + λ·p).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..nn.module import Parameter
from .optimizer import Optimizer


class SGD(Optimizer):
    """params: Parameters or group dicts. State per parameter: "momentum_buffer"."""

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov}
        super().__init__(params, defaults)

    def check_hyperparameters(self, group: dict) -> None:
        super().check_hyperparameters(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening = 0")

    def update(self, p: Parameter, state: dict, group: dict) -> None:
        g = p.grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data             # g = ∇L + λ·p
        momentum = group["momentum"]
        if momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.copy()            # b = g
            else:
                buf = state["momentum_buffer"]
                buf *= momentum
                buf += (1 - group["dampening"]) * g            # b = μ·b + (1 − τ)·g
            buf = state["momentum_buffer"]
            g = g + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g                              # p = p − η·g
