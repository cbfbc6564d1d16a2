"""CrossEntropyLoss: softmax and negative log-likelihood in one, with label smoothing.

For logits z: (N, K) and targets t: (N,) in 0..K-1,
    log p = z - logsumexp(z)                              (log-softmax, computed stably)
    q     = (1 - ε) onehot(t) + ε / K                     (label smoothing ε; ε = 0 is plain CE)
    L     = (1/N) Σ_n  -Σ_k q_nk log p_nk                 (reduction="mean")
and the gradient is the famous one:
    dL/dz = (p - q) / N
"""

from __future__ import annotations

import numpy as np

from .arguments import choice, fraction
from .module import Module, check_grad, check_input


class CrossEntropyLoss(Module):
    """loss = crit(logits, targets) then dlogits = crit.backward().  logits: (N, K), targets: (N,)."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__()
        self.label_smoothing = fraction(self, "label_smoothing", label_smoothing)
        self.reduction = choice(self, "reduction", reduction, ("mean", "sum"))
        self.cache = None

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"

    def _check(self, logits: np.ndarray, targets: np.ndarray) -> None:
        check_input(self, logits, ndim=2)                 # float (N, K), N and K at least 1
        targets = np.asarray(targets)
        if targets.shape != (logits.shape[0],) or targets.dtype.kind not in "iu":
            raise ValueError(f"{self!r}: expected integer targets ({logits.shape[0]},), "
                             f"got {targets.dtype} {targets.shape}")
        if targets.min() < 0 or targets.max() >= logits.shape[1]:
            raise ValueError(f"{self!r}: targets must be in 0..{logits.shape[1] - 1}, "
                             f"got values in {targets.min()}..{targets.max()}")

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        self._check(logits, targets)
        N, K = logits.shape
        z = logits - logits.max(axis=1, keepdims=True)                 # shift: exp never overflows
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))        # log-softmax
        eps = self.label_smoothing
        q = np.full_like(log_p, eps / K)
        q[np.arange(N), targets] += 1.0 - eps                           # q = (1-ε) onehot + ε/K
        loss = -(q * log_p).sum()
        scale = 1.0 / N if self.reduction == "mean" else 1.0
        self.cache = (np.exp(log_p), q, scale)
        return float(loss * scale)

    def backward(self, grad_output: float = 1.0) -> np.ndarray:
        p, q, scale = self._saved()
        check_grad(self, grad_output, ())                                # the loss is a number
        return (p - q) * (scale * grad_output)                          # dL/dz = (p - q) / N
