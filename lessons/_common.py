"""What every lesson shares: quick mode, where figures go, the data, checks and tables.

    QUICK            True when NUMPY_RESNET_QUICK=1: tiny sizes, each lesson runs in seconds
    pick(q, f)       q in quick mode, f otherwise
    check(ok, msg)   an assert the reader sees pass
    show_or_save     save a figure to lessons/output/, show it only in a notebook
    data(...)        CIFAR-10 ($NUMPY_RESNET_DATA, else the library's default place)
    train(...)       the training loop of numpy_resnet.train, for a model we built ourselves
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from numpy_resnet.data import Loader, load_cifar10
from numpy_resnet.nn import CrossEntropyLoss, Module
from numpy_resnet.optim import SGD, WarmupCosine
from numpy_resnet.train import evaluate

QUICK = os.environ.get("NUMPY_RESNET_QUICK", "") not in ("", "0")
MODE = "quick" if QUICK else "full"


def pick(quick, full):
    """The quick-mode value or the full-mode value."""
    return quick if QUICK else full


def check(condition: bool, message: str) -> None:
    """An assert that says so when it passes (not skipped by python -O)."""
    if not condition:
        raise AssertionError(f"check FAILED: {message}")
    print(f"check passed: {message}")


def print_table(headers: list[str], rows: list[list]) -> None:
    """A plain text table; each cell is printed with str(), numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_looks_numeric(row[i]) for row in cells[1:]) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(row, widths, numeric, strict=True))
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace(",", "").replace("x", "").replace("%", ""))
        return True
    except ValueError:
        return False


def best_time(fn, repeat: int = 3) -> float:
    """The fastest of `repeat` runs of fn(), in seconds (the least disturbed by other work)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ----- figures ---------------------------------------------------------------------------
def output_dir() -> Path:
    """lessons/output/ (git-ignored), or $NUMPY_RESNET_LESSON_OUTPUT: where figures are saved."""
    path = Path(os.environ.get("NUMPY_RESNET_LESSON_OUTPUT") or Path(__file__).resolve().parent / "output")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")          # already imported inside Jupyter
    return ipython is not None and ipython.get_ipython() is not None


def show_or_save(fig, name: str) -> Path:
    """Save `fig` as lessons/output/<name>; show it too in Jupyter or with NUMPY_RESNET_SHOW=1.

    In quick mode the file is <stem>_quick.png, so a quick run never overwrites full results.
    """
    import matplotlib.pyplot as plt

    if QUICK:
        name = f"{Path(name).stem}_quick{Path(name).suffix}"
    path = output_dir() / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure saved: {path}")
    if _in_notebook() or os.environ.get("NUMPY_RESNET_SHOW") == "1":
        plt.show()
    else:
        plt.close(fig)
    return path


# ----- data and training -----------------------------------------------------------------
def data(train_size: int | None = None, test_size: int | None = None, seed: int = 0):
    """CIFAR-10 as uint8 arrays (numpy_resnet.data.CIFAR10), class-balanced subsets.

    Read from $NUMPY_RESNET_DATA if set, else from the library's cache folder (downloaded
    there the first time, 170 MB).
    """
    return load_cifar10(train_size=train_size, test_size=test_size, seed=seed)


def train(model: Module, x_train, y_train, x_test, y_test, epochs: int, lr: float = 0.1,
          batch_size: int = 128, weight_decay: float = 5e-4, warmup_epochs: float = 1,
          label_smoothing: float = 0.0, augment: bool = True, params=None, schedule=None,
          frozen_modules=(), test_every: int = 1, seed: int = 0, label: str = "") -> dict:
    """Train `model` with SGD (momentum 0.9); returns {"epochs": [row, ...], "steps": [loss, ...]}.

    The loop of numpy_resnet.train, written out so that lessons can change its parts:
    params: parameters or parameter groups for the optimizer (default: all of them).
    schedule: None for linear warmup then cosine (the library's recipe), or a function
        (optimizer, total_steps) -> scheduler.
    frozen_modules: modules kept in eval mode while the rest trains (frozen BatchNorm).
    test_every: evaluate on the test set every this many epochs, and after the last one.
    An epoch row has epoch, train_loss, train_acc, test_loss, test_acc (NaN when not
    evaluated), seconds; "steps" holds
    every mini-batch's loss. A loss that is not finite stops the run (row "diverged": True).
    """
    loader = Loader(x_train, y_train, batch_size, shuffle=True, augment=augment, seed=seed)
    optimizer = SGD(model.parameters() if params is None else params, lr=lr, momentum=0.9,
                    weight_decay=weight_decay)
    total = epochs * len(loader)
    if schedule is None:
        warmup = min(int(warmup_epochs * len(loader)), total - 1)
        scheduler = WarmupCosine(optimizer, warmup_steps=warmup, total_steps=total)
    else:
        scheduler = schedule(optimizer, total)
    criterion = CrossEntropyLoss(label_smoothing=label_smoothing)
    history = {"epochs": [], "steps": []}
    for epoch in range(epochs):
        model.train()
        for module in frozen_modules:
            module.eval()
        loader.set_epoch(epoch)
        start, seen, correct, total_loss = time.perf_counter(), 0, 0, 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            logits = model(xb)                          # forward: every layer keeps its cache
            loss = criterion(logits, yb)
            if not np.isfinite(loss):
                print(f"{label:>20}  epoch {epoch + 1}: loss is {loss}, training diverged")
                history["epochs"].append({"epoch": epoch + 1, "diverged": True})
                return history
            model.backward(criterion.backward())        # dL/dθ lands in every .grad
            optimizer.step()                            # θ ← θ - lr · (momentum) grad
            scheduler.step()
            history["steps"].append(loss)
            seen += len(yb)
            correct += int((logits.argmax(axis=1) == yb).sum())
            total_loss += loss * len(yb)
        seconds = time.perf_counter() - start
        test_loss, test_acc = float("nan"), float("nan")
        if (epoch + 1) % test_every == 0 or epoch + 1 == epochs:
            test_loss, test_acc, _ = evaluate(model, x_test, y_test)
        row = {"epoch": epoch + 1, "train_loss": total_loss / seen, "train_acc": correct / seen,
               "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds, "diverged": False}
        history["epochs"].append(row)
        tested = "" if np.isnan(test_acc) else f"  test acc {test_acc:.3f}"
        print(f"{label:>20}  epoch {epoch + 1}/{epochs}  train loss {row['train_loss']:.3f}  "
              f"train acc {row['train_acc']:.3f}{tested}  ({seconds:.0f} s)")
    return history


def smooth(values, window: int) -> np.ndarray:
    """Moving average over `window` steps (shorter at the start), for noisy loss curves."""
    values = np.asarray(values, dtype=np.float64)
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumsum[1:] - cumsum[np.arange(1, len(values) + 1) - counts]) / counts


def rng(seed: int = 0) -> np.random.Generator:
    """A NumPy generator for the lesson's own random inputs."""
    return np.random.default_rng(seed)
