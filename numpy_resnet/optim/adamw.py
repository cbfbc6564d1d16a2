"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, as torch.optim.AdamW.

For each parameter p at step t = 1, 2, ... with gradient g, learning rate η, betas
(β₁, β₂), eps ε and weight decay λ:

    p = p·(1 − η·λ)                      decay applied to p directly, not added to g
    m = β₁·m + (1 − β₁)·g                running mean of g       (m₀ = 0)
    v = β₂·v + (1 − β₂)·g²               running mean of g²      (v₀ = 0)
    m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)    undo the pull towards the zero start
    p = p − η·m̂ / (√v̂ + ε)

computed, as torch does, as p − (η / (1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..nn.module import Parameter
from .optimizer import Optimizer


class AdamW(Optimizer):
    """params: Parameters or group dicts. State per parameter: "step", "exp_avg" (m) and
    "exp_avg_sq" (v)."""

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def check_hyperparameters(self, group: dict) -> None:
        super().check_hyperparameters(group)
        beta1, beta2 = group["betas"]
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"AdamW: betas must be in [0, 1), got {group['betas']}")
        if group["eps"] < 0:
            raise ValueError(f"AdamW: invalid eps {group['eps']}")

    def update(self, p: Parameter, state: dict, group: dict) -> None:
        lr, eps = group["lr"], group["eps"]
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        step = int(state["step"]) + 1
        state["step"] = step
        g, m, v = p.grad, state["exp_avg"], state["exp_avg_sq"]

        p.data *= 1 - lr * group["weight_decay"]      # p = p·(1 − η·λ)
        m *= beta1
        m += (1 - beta1) * g                          # m = β₁·m + (1 − β₁)·g
        v *= beta2
        v += (1 - beta2) * g * g                      # v = β₂·v + (1 − β₂)·g²

        step_size = lr / (1 - beta1 ** step)          # η / (1 − β₁ᵗ)
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** step) + eps
        p.data -= step_size * (m / denom)
