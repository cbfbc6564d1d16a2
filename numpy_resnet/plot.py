"""Training curves: loss and accuracy per epoch for one or more runs, side by side."""

from __future__ import annotations

import json
from pathlib import Path


def read_history(run: str | Path) -> tuple[str, list[dict]]:
    """A run folder (or its metrics.json) -> (label, rows)."""
    path = Path(run)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"plot: no metrics.json at {path}")
    try:
        rows = json.loads(path.read_text())["history"]
    except (ValueError, KeyError, TypeError) as err:      # not JSON, or not a run's metrics
        raise ValueError(f"{path}: not a run's metrics.json (expected JSON with a 'history' "
                         f"list; {type(err).__name__}: {err})") from err
    return path.parent.name, rows


def plot_runs(runs: list[str | Path], output: str | Path, title: str | None = None) -> Path:
    """Draw train loss, train accuracy and test accuracy against epoch; save to `output`."""
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps") and not _has_display():
        matplotlib.use("Agg")                        # headless: write the file, open no window
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        label, rows = read_history(run)
        epochs = [r["epoch"] for r in rows]
        line, = ax_loss.plot(epochs, [r["train_loss"] for r in rows], label=label)
        ax_acc.plot(epochs, [r["test_acc"] for r in rows], color=line.get_color(), label=f"{label} test")
        ax_acc.plot(epochs, [r["train_acc"] for r in rows], color=line.get_color(), linestyle="--",
                    label=f"{label} train")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (solid: test, dashed: train)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def _has_display() -> bool:
    import os
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
