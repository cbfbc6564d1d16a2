"""Optimizers and learning-rate schedules, with torch.optim's names and update rules.

    optimizer.py      Optimizer (param groups, state, flat state_dict), param_groups_no_decay
    sgd.py            SGD: momentum, Nesterov, dampening, weight decay
    adamw.py          AdamW: Adam with decoupled weight decay
    lr_scheduler.py   StepLR, MultiStepLR, LinearLR, CosineAnnealingLR, WarmupCosine
"""

from .adamw import AdamW
from .lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    StepLR,
    WarmupCosine,
)
from .optimizer import Optimizer, param_groups_no_decay
from .sgd import SGD

__all__ = [
    "SGD",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "LinearLR",
    "MultiStepLR",
    "Optimizer",
    "StepLR",
    "WarmupCosine",
    "param_groups_no_decay",
]
