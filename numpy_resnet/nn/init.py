"""Weight initialisation, as `torch.nn.init` does it.

Kaiming (He et al., 2015): for a ReLU network keep the variance of activations constant,
    std = gain / sqrt(fan),   gain = sqrt(2 / (1 + a²)),
fan_in = C_in/groups · k_h · k_w (forward signal), fan_out = C_out/groups · k_h · k_w
(backward signal); torchvision's ResNets use kaiming_normal_(mode="fan_out").
"""

from __future__ import annotations

import math

import numpy as np

from ..seeding import get_rng
from .module import Parameter


def _fans(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv2d (out, in/groups, kh, kw) weight."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _gain(nonlinearity: str, a: float) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity == "linear":
        return 1.0
    raise ValueError(f"init: unknown nonlinearity {nonlinearity!r}")


def kaiming_normal_(p: Parameter, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Parameter:
    """W ~ N(0, std²), std = gain / sqrt(fan)."""
    fan_in, fan_out = _fans(p.data.shape)
    fan = fan_in if mode == "fan_in" else fan_out
    std = _gain(nonlinearity, a) / math.sqrt(fan)
    p.data[...] = get_rng().normal(0.0, std, size=p.data.shape)
    return p


def kaiming_uniform_(p: Parameter, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Parameter:
    """W ~ U(-bound, bound), bound = gain · sqrt(3 / fan) (same variance as the normal)."""
    fan_in, fan_out = _fans(p.data.shape)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    p.data[...] = get_rng().uniform(-bound, bound, size=p.data.shape)
    return p


def uniform_(p: Parameter, low: float, high: float) -> Parameter:
    p.data[...] = get_rng().uniform(low, high, size=p.data.shape)
    return p


def normal_(p: Parameter, mean: float = 0.0, std: float = 1.0) -> Parameter:
    p.data[...] = get_rng().normal(mean, std, size=p.data.shape)
    return p


def constant_(p: Parameter, value: float) -> Parameter:
    p.data[...] = value
    return p


def default_init_(weight: Parameter, bias: Parameter | None) -> None:
    """PyTorch's default for Conv2d and Linear: kaiming_uniform_(a=√5), bias ~ U(±1/√fan_in)."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _fans(weight.data.shape)
        bound = 1.0 / math.sqrt(fan_in)
        uniform_(bias, -bound, bound)
