"""Gradient checking: compare a module's hand-written backward with finite differences.

For a module y = f(x; θ) and a random upstream gradient g (never all ones: with ones, a
BatchNorm backward that forgets the Σ dy terms still looks right), the scalar
    L(x, θ) = Σ g ⊙ f(x; θ)
has dL/dx = module.backward(g) and dL/dθ = θ.grad. Each entry is checked against the
central difference
    dL/dx_i ≈ (L(x + h e_i) - L(x - h e_i)) / 2h            error O(h²),
computed in float64 as Σ g ⊙ (y₊ - y₋) / 2h (subtracting outputs first loses less to rounding).

Relative error of one entry: |a - n| / max(|a|, |n|, floor), floor = max(1e-3 · max|n| over
the tensor, 1e-7), so that rounding in entries near zero does not read as an error. In float64 a correct
backward gives about 1e-8 or less; 1e-6 is the pass mark.

Kinks: ReLU at 0 and max-pool ties have no derivative, and a difference that straddles one is
meaningless. An entry is flagged as a kink, and left out of the error, when its differences
disagree in a way no smooth function allows: the one-sided differences (L(x+h) - L(x))/h and
(L(x) - L(x-h))/h differ by more than 0.1 %, or the central differences with steps h and 2h
(equal up to O(h²) for a smooth L) differ by more than `kink_tol` relative.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from . import seeding
from .nn.module import Module


@dataclass
class TensorCheck:
    """Result for one tensor: the input or one parameter."""
    name: str
    shape: tuple
    checked: int
    kinks: int
    max_rel_error: float


@dataclass
class GradcheckReport:
    module: str
    mode: str
    tensors: list[TensorCheck] = field(default_factory=list)

    @property
    def errors(self) -> dict[str, float]:
        return {t.name: t.max_rel_error for t in self.tensors}

    @property
    def max_error(self) -> float:
        return max((t.max_rel_error for t in self.tensors), default=0.0)

    def ok(self, tol: float = 1e-6) -> bool:
        return self.max_error < tol

    def __str__(self) -> str:
        lines = [f"{self.module} [{self.mode}]"]
        for t in self.tensors:
            lines.append(f"  {t.name:<24} {str(t.shape):<18} checked {t.checked:>5}  "
                         f"kinks {t.kinks:>3}  max rel error {t.max_rel_error:.2e}")
        return "\n".join(lines)


class _Probe:
    """Runs the module's forward from the same starting state every time.

    Running statistics (BatchNorm) and the random generator (Dropout) change on every
    forward; the probe snapshots them once and restores them before each evaluation.
    """

    def __init__(self, module: Module, args: tuple):
        self.module = module
        self.args = args
        self.buffers = [(m, name, np.array(b, copy=True))
                        for m in module.modules() for name, b in m._buffers.items()]
        self.rng_state = seeding.state()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for m, name, saved in self.buffers:
            m._buffers[name] = saved.copy()
        seeding.set_state(copy.deepcopy(self.rng_state))
        return np.array(self.module(x, *self.args), dtype=np.float64)   # a copy: y may be a view of x

    def restore(self) -> None:
        for m, name, saved in self.buffers:
            m._buffers[name] = saved.copy()


def _numeric_entry(probe, x, values, index, g, y0, h):
    """Differences of L = Σ g ⊙ f along one entry of `values`: (central h, central 2h, left, right)."""
    original = values[index]
    outputs = {}
    for step in (h, -h, 2 * h, -2 * h):
        values[index] = original + step
        outputs[step] = probe(x)
    values[index] = original
    central = np.vdot(g, outputs[h] - outputs[-h]) / (2 * h)
    central_2h = np.vdot(g, outputs[2 * h] - outputs[-2 * h]) / (4 * h)
    right = np.vdot(g, outputs[h] - y0) / h
    left = np.vdot(g, y0 - outputs[-h]) / h
    return central, central_2h, left, right


def _check_tensor(name, values, analytic, probe, x, g, y0, h, max_checks, kink_tol, rng):
    """Compare `analytic` with finite differences on (a sample of) the entries of `values`."""
    size = values.size
    if max_checks is None or size <= max_checks:
        flat = np.arange(size)
    else:
        flat = np.sort(rng.choice(size, max_checks, replace=False))
    indices = [np.unravel_index(i, values.shape) for i in flat]
    diffs = np.array([_numeric_entry(probe, x, values, index, g, y0, h) for index in indices])
    numeric, numeric_2h, left, right = diffs.T if len(diffs) else np.zeros((4, 0))
    a = np.array([analytic[index] for index in indices])
    floor = max(1e-3 * np.abs(numeric).max(initial=0.0), 1e-7)
    scale = np.maximum(np.maximum(np.abs(numeric), np.abs(a)), floor)
    one_sided_disagree = np.abs(right - left) > 1e-3 * np.maximum(np.abs(left), np.abs(right)).clip(floor)
    steps_disagree = np.abs(numeric - numeric_2h) > kink_tol * scale
    kink = one_sided_disagree | steps_disagree
    rel = np.abs(a - numeric) / scale
    worst = float(rel[~kink].max(initial=0.0))
    return TensorCheck(name, values.shape, len(indices), int(kink.sum()), worst)


def gradcheck(module: Module, x: np.ndarray, *args, train: bool = True, seed: int = 0,
              h: float = 1e-5, max_checks: int | None = None, kink_tol: float = 1e-5,
              check_input: bool = True) -> GradcheckReport:
    """Check the input gradient and every parameter gradient of `module` at `x`.

    module: any Module; it is copied and cast to float64, the original is not touched.
    x: the input, e.g. (N, C, H, W); extra positional `args` are passed to forward
    (e.g. the targets of a loss). train: check in train or eval mode.
    max_checks: check at most this many randomly chosen entries per tensor (None: all).
    """
    rng = np.random.default_rng((seed, 2015))     # not the stream a user would draw x from
    module = copy.deepcopy(module).to(np.float64).train(train)
    x = np.array(x, dtype=np.float64)
    probe = _Probe(module, args)

    # analytic gradients: one forward, one backward with a random upstream gradient g
    module.zero_grad()
    y0 = probe(x)
    g = rng.standard_normal(y0.shape) if y0.ndim else np.float64(rng.standard_normal())
    dx = module.backward(g)
    analytic = {name: p.grad.copy() for name, p in module.named_parameters() if p.requires_grad}

    report = GradcheckReport(type(module).__name__, "train" if train else "eval")
    if check_input:
        report.tensors.append(_check_tensor("input", x, dx, probe, x, g, y0, h,
                                            max_checks, kink_tol, rng))
    for name, p in module.named_parameters():
        if p.requires_grad:
            report.tensors.append(_check_tensor(name, p.data, analytic[name], probe, x, g, y0, h,
                                                max_checks, kink_tol, rng))
    probe.restore()
    return report
