"""One check the model tests share: a model of ours and its PyTorch twin, trained side by side.

Both start from the same weights; each of two steps runs forward, cross-entropy, backward and
an SGD step (momentum 0.9, weight decay 5e-4), and the logits, loss, dL/dx and every
parameter gradient are compared, then every weight and running statistic after both steps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from numpy_resnet.nn import CrossEntropyLoss
from numpy_resnet.optim import SGD


def assert_close(ours, theirs, what: str, tol: float = 1e-9) -> None:
    """|ours - theirs| <= tol · (|theirs| + max |theirs|), elementwise."""
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    scale = float(np.abs(theirs).max(initial=0.0))
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * scale, err_msg=what)


def assert_two_sgd_steps_match(ours, theirs, x: np.ndarray, targets: np.ndarray) -> None:
    """ours: a float64 model of numpy_resnet; theirs: its float64 torch twin, same weights.

    Step 0 starts from identical weights: agreement to rounding (1e-9). After an update the
    weights differ by rounding (~1e-16), which a deep plain net amplifies ~10⁴-fold (a
    residual net ~10²-fold): 1e-6 still catches any wrong term of the update.
    """
    criterion = CrossEntropyLoss()
    hyper = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    optimizer = SGD(ours.parameters(), **hyper)
    torch_optimizer = torch.optim.SGD(theirs.parameters(), **hyper)
    torch_params = dict(theirs.named_parameters())
    for step, tol in enumerate([1e-9, 1e-6]):
        ours.zero_grad()
        logits = ours(x)
        loss = criterion(logits, targets)
        dx = ours.backward(criterion.backward())

        torch_optimizer.zero_grad()
        x_t = torch.tensor(x, requires_grad=True)
        logits_t = theirs(x_t)
        loss_t = F.cross_entropy(logits_t, torch.tensor(targets))
        loss_t.backward()

        assert_close(logits, logits_t, f"step {step}: logits", tol)
        assert np.isclose(loss, loss_t.item(), rtol=tol)
        assert_close(dx, x_t.grad, f"step {step}: dL/dx", tol)
        for key, p in ours.named_parameters():
            assert_close(p.grad, torch_params[key].grad, f"step {step}: grad of {key}", tol)
        optimizer.step()
        torch_optimizer.step()
    theirs_state = theirs.state_dict()
    for key, value in ours.state_dict().items():           # weights and running statistics
        assert_close(value, theirs_state[key], f"after two steps: {key}", 1e-6)
