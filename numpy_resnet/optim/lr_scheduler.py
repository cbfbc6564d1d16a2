"""Learning-rate schedules with torch.optim.lr_scheduler's semantics, stepped per iteration.

A scheduler sets group["lr"] in each parameter group of its optimizer. Creating it sets
the lr of step 0; each `step()`, called after `optimizer.step()`, moves to the next step:

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = WarmupCosine(opt, warmup_steps=500, total_steps=10_000)
    for xb, yb in loader:
        ...                     forward, backward
        opt.step()
        sched.step()

Every schedule here is a closed-form function lr(t) of the step count t and the group's
starting lr (its "initial_lr", the lr it had when the first scheduler was made). torch
calls t `last_epoch`; we keep the name although it counts iterations.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from .optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses write `lr_at(base_lr, t)`."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def lr_at(self, base_lr: float, t: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not implement lr_at")

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        self._last_lr = [self.lr_at(base_lr, self.last_epoch) for base_lr in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The lr of each group, as last set by this scheduler."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat, for .npz checkpoints: {"last_epoch": array(t), "base_lrs": array([...])}."""
        return {"last_epoch": np.asarray(self.last_epoch),
                "base_lrs": np.asarray(self.base_lrs, dtype=np.float64)}

    def load_state_dict(self, state) -> None:
        """Restore the step count and starting lrs, and set the groups' lr for that step."""
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = [float(lr) for lr in np.asarray(state["base_lrs"])]
        self._apply()


class StepLR(LRScheduler):
    """lr = base · γ^⌊t / step_size⌋: multiply by gamma every step_size steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, t: int) -> float:
        return base_lr * self.gamma ** (t // self.step_size)


class MultiStepLR(LRScheduler):
    """lr = base · γ^(number of milestones ≤ t): multiply by gamma at each milestone."""

    def __init__(self, optimizer: Optimizer, milestones, gamma: float = 0.1):
        self.milestones, self.gamma = sorted(milestones), gamma
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, t: int) -> float:
        return base_lr * self.gamma ** bisect_right(self.milestones, t)


class LinearLR(LRScheduler):
    """lr = base · (s + (e − s) · min(t, T) / T): the factor goes linearly from
    start_factor s to end_factor e over total_iters T steps, then stays at e."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1 / 3,
                 end_factor: float = 1.0, total_iters: int = 5):
        if not (0 < start_factor <= 1 and 0 <= end_factor <= 1):
            raise ValueError("LinearLR: start_factor must be in (0, 1], end_factor in [0, 1]")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, t: int) -> float:
        progress = min(t, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)


class CosineAnnealingLR(LRScheduler):
    """lr = η_min + (base − η_min) · (1 + cos(π t / T_max)) / 2.

    Half a cosine from base (t = 0) down to eta_min (t = T_max). Past T_max it rises
    again, as torch's does (use WarmupCosine to stay at the minimum).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, t: int) -> float:
        cosine = math.cos(math.pi * t / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cosine) / 2


class WarmupCosine(LRScheduler):
    """Linear warmup to the peak lr, then a half cosine down to min_lr. With W = warmup_steps,
    T = total_steps, s = start_factor and peak = the group's starting lr:

        t < W:        lr = peak · (s + (1 − s) · t / W)
        W ≤ t ≤ T:    lr = min_lr + (peak − min_lr) · (1 + cos(π (t − W) / (T − W))) / 2
        t > T:        lr = min_lr

    Up to T this is torch's SequentialLR([LinearLR(opt, s, 1.0, W),
    CosineAnnealingLR(opt, T − W, min_lr)], milestones=[W]); after T, torch's cosine
    would climb again while this one stays at min_lr.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int,
                 min_lr: float = 0.0, start_factor: float = 1e-3):
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"WarmupCosine: need 0 <= warmup_steps < total_steps, got "
                             f"warmup_steps={warmup_steps}, total_steps={total_steps}")
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.min_lr, self.start_factor = min_lr, start_factor
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, t: int) -> float:
        if t < self.warmup_steps:
            return base_lr * (self.start_factor + (1 - self.start_factor) * t / self.warmup_steps)
        if t > self.total_steps:
            return self.min_lr
        progress = (t - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.min_lr + (base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2
