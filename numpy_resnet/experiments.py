"""Experiments on gradient flow: `numpy-resnet gradflow` and `numpy-resnet experiment degradation`.

gradflow      one batch (the first 128 training images), one forward/backward per model at
              initialisation or from a checkpoint; a table per model and a plot of each conv's
              |dL/dW| against depth, log scale.
degradation   He et al.'s Figure 1 on the CIFAR-10 subset: plain nets and their residual
              twins trained with one recipe; curves, gradient-flow snapshots at a few
              epochs and summary.md beside the PyTorch reference numbers.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import seeding
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, restore
from .data import load_cifar10
from .diagnostics import GradFlowReport, gradient_flow
from .engine import get_engine
from .nn import Module
from .train import TrainConfig, build_model, fit

DEGRADATION_MODELS = ("resnet20", "plain20", "resnet56", "plain56")
WIDTH16_MODELS = ("resnet18", "plain18", "resnet34", "plain34")     # CIFAR stem, width 16

# PyTorch on the same subset, 30 epochs, mean of 2 seeds ("1 seed" marked *):
# /work/shared/data/cifar10-subset/README.md.   model: (params, final train loss, test accuracy)
REFERENCE = {
    "resnet18": (701_466, 0.48, 0.70), "plain18": (690_266, 0.62, 0.67),
    "resnet34": (1_334_618, 0.50, 0.71), "plain34": (1_323_418, 1.35, 0.50),    # *
    "resnet20": (272_474, 0.49, 0.73), "plain20": (269_722, 0.80, 0.65),
    "resnet56": (855_770, 0.59, 0.70), "plain56": (853_018, 1.71, 0.37),
    "resnet110": (1_730_714, 0.78, 0.64), "plain110": (1_727_962, 2.30, 0.11),  # *
}
REFERENCE_EPOCHS = 30
# first/last conv |dL/dW| at initialisation, first 128 training images, train mode
REFERENCE_RATIOS = {"resnet56": "11-21", "plain56": "1,500-2,100", "plain110": "2.6 million"}


# ----- models and the batch -------------------------------------------------------------------
def first_batch(data_dir: str | os.PathLike | None, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The first `batch_size` training images in file order: (B, 3, 32, 32) uint8, (B,) labels."""
    data = load_cifar10(data_dir)
    return data.x_train[:batch_size], data.y_train[:batch_size]


def init_model(name: str, seed: int = 0, shortcut: str = "B", width: int = 16) -> Module:
    """A model at initialisation, built as `numpy-resnet train` builds it (10 classes)."""
    saved = seeding.state()
    model = build_model(TrainConfig(model=name, seed=seed, shortcut=shortcut, width=width, out=None))
    seeding.set_state(saved)              # building reseeds the library's generator; undo
    return model


def checkpoint_model(run: str | os.PathLike) -> tuple[str, Module]:
    """A trained model from a run folder or checkpoint.npz -> (label, model)."""
    state, meta = read_checkpoint(run)
    config = TrainConfig(**meta["config"])
    saved = seeding.state()
    model = build_model(config)
    seeding.set_state(saved)
    restore(state, model)
    return f"{config.model} epoch {meta.get('epoch', '?')}", model


def gradflow_reports(batch: tuple, models=(), checkpoints=(), seed: int = 0, shortcut: str = "B",
                     width: int = 16):
    """gradient_flow on `batch` for each named model at init, then each checkpoint; yields reports."""
    for name in models:
        yield gradient_flow(init_model(name, seed, shortcut, width), *batch, name=name)
    for run in checkpoints:
        label, model = checkpoint_model(run)
        yield gradient_flow(model, *batch, name=label)


# ----- plots ------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")                       # write files, open no window
    import matplotlib.pyplot as plt
    return plt


def _draw_gradflow(ax, report: GradFlowReport, **style) -> None:
    norms = report.conv_grad_norms()
    ax.semilogy(np.arange(1, len(norms) + 1), norms,
                label=f"{report.model} (ratio {report.first_last_ratio():.3g})", **style)


def plot_gradflow(reports: list[GradFlowReport], output: str | os.PathLike,
                  title: str = "conv weight gradient at initialisation, one batch") -> Path:
    """|dL/dW| of each main-path conv against its depth, one line per report; log scale."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for report in reports:
        _draw_gradflow(ax, report, marker=".", markersize=3)
    ax.set(xlabel="conv layer (input to output)", ylabel="|dL/dW|  (Frobenius norm)", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, output)


def _save(fig, output: str | os.PathLike) -> Path:
    plt = _pyplot()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


# ----- the degradation experiment ---------------------------------------------------------------
class _Snapshots:
    """Gradient-flow reports of one run at chosen epochs, saved as gradflow/epoch_NNN.json.

    Used as fit's `on_epoch_end`: after each epoch, a wanted epoch without a snapshot gets one.
    """

    def __init__(self, run: Path, epochs: list[int], batch: tuple, log=print):
        self.run, self.epochs, self.batch, self.log = run, epochs, batch, log

    def path(self, epoch: int) -> Path:
        return self.run / "gradflow" / f"epoch_{epoch:03d}.json"

    def missing(self) -> list[int]:
        return [e for e in self.epochs if not self.path(e).is_file()]

    def __call__(self, epoch: int, model: Module) -> None:
        if epoch in self.missing():
            self.take(epoch, model)

    def take(self, epoch: int, model: Module) -> GradFlowReport:
        report = gradient_flow(model, *self.batch, name=f"{self.run.name} epoch {epoch}")
        self.path(epoch).parent.mkdir(parents=True, exist_ok=True)
        self.path(epoch).write_text(json.dumps(report.to_json()))
        self.log(f"{report.model}: first/last conv |dL/dW| = {report.first_last_ratio():.4g}")
        return report


def _check_same_recipe(run: Path, config: TrainConfig) -> None:
    """A half-finished run continues only under the config it started with."""
    _, meta = read_checkpoint(run)
    stored = meta["config"]
    ignore = ("out", "data_dir")
    changed = [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in asdict(config).items()
               if k not in ignore and stored.get(k) != v]
    if changed:
        raise ValueError(f"degradation: {run} was started with another recipe ({'; '.join(changed)}); "
                         f"choose another --out or delete the run")


def completed_epochs(run: Path) -> int:
    metrics = run / "metrics.json"
    return len(json.loads(metrics.read_text())["history"]) if metrics.is_file() else 0


def run_twin(config: TrainConfig, data, batch: tuple, snapshot_epochs: list[int],
             progress: bool = True, log=print) -> None:
    """Train one model (or finish it) and take its gradient-flow snapshots; skip what is done."""
    run = Path(config.out)
    snapshots = _Snapshots(run, snapshot_epochs, batch, log)
    if completed_epochs(run) >= config.epochs and not snapshots.missing():
        log(f"{run}: complete, skipped")
        return
    if 0 in snapshots.missing():
        snapshots.take(0, init_model(config.model, config.seed, config.shortcut, config.width))
    resume = (run / CHECKPOINT_NAME).is_file()
    if resume:
        _check_same_recipe(run, config)
    if completed_epochs(run) < config.epochs:
        fit(config, data=data, resume=resume, progress=progress, log=log, on_epoch_end=snapshots)
    for epoch in snapshots.missing():
        log(f"{run}: no snapshot at epoch {epoch} (the run was resumed past it)")


def degradation(out: str | os.PathLike = "runs/degradation", models=DEGRADATION_MODELS,
                epochs: int = REFERENCE_EPOCHS, train_size: int | None = None,
                test_size: int | None = None, seed: int = 0, data_dir=None,
                snapshot_epochs: list[int] | None = None, gradflow_batch: int = 128,
                progress: bool = True, log=print) -> Path:
    """Train each model under out/NAME with the reference recipe; write summary.md and a plot.

    The recipe is TrainConfig's default (SGD momentum 0.9, lr 0.1, 2-epoch warmup + cosine,
    wd 5e-4, batch 128, crop + flip); CIFAR nets use projection shortcuts (B), the
    18/34-layer nets a CIFAR stem and width 16. Snapshots (on the first `gradflow_batch`
    training images) default to init, middle and end.
    """
    out = Path(out)
    log(f"degradation on the {get_engine()} engine: {' '.join(models)}, {epochs} epochs each -> {out}")
    snapshot_epochs = sorted(set(snapshot_epochs or (0, epochs // 2, epochs)))
    data = load_cifar10(data_dir, train_size, test_size, seed=seed)
    batch = first_batch(data_dir, gradflow_batch)
    data_dir = None if data_dir is None else str(data_dir)
    for name in models:
        config = TrainConfig(model=name, epochs=epochs, train_size=train_size, test_size=test_size,
                             seed=seed, out=str(out / name), data_dir=data_dir)
        run_twin(config, data, batch, snapshot_epochs, progress, log)
    plot_degradation(out, models, snapshot_epochs, out / "degradation.png")
    summary = out / "summary.md"
    summary.write_text(summary_markdown(out, models, epochs, len(data.x_train), len(data.x_test)))
    log(f"wrote {summary} and {out / 'degradation.png'}")
    return summary


def _snapshot(run: Path, epoch: int) -> GradFlowReport | None:
    path = run / "gradflow" / f"epoch_{epoch:03d}.json"
    return GradFlowReport.from_json(json.loads(path.read_text())) if path.is_file() else None


def _history(run: Path) -> list[dict]:
    metrics = run / "metrics.json"
    return json.loads(metrics.read_text())["history"] if metrics.is_file() else []


def plot_degradation(out: Path, models, snapshot_epochs: list[int], output: Path) -> Path:
    """Train loss, test accuracy, and |dL/dW| against depth at init (solid) and at the end (dashed)."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc, ax_grad) = plt.subplots(1, 3, figsize=(16, 4.5))
    for name in models:
        run = out / name
        rows = _history(run)
        style = {"linestyle": "--"} if name.startswith("plain") else {}
        line, = ax_loss.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows],
                             label=name, **style)
        ax_acc.plot([r["epoch"] for r in rows], [r["test_acc"] for r in rows], label=name,
                    color=line.get_color(), **style)
        for epoch, alpha in ((snapshot_epochs[0], 1.0), (snapshot_epochs[-1], 0.45)):
            report = _snapshot(run, epoch)
            if report is not None:
                _draw_gradflow(ax_grad, report, color=line.get_color(), alpha=alpha, **style)
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss (dashed: plain)")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    ax_grad.set(xlabel="conv layer", ylabel="|dL/dW|",
                title=f"conv weight gradient, epoch {snapshot_epochs[0]} and (faint) {snapshot_epochs[-1]}")
    for ax in (ax_loss, ax_acc, ax_grad):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, output)


def summary_markdown(out: Path, models, epochs: int, train_size: int, test_size: int) -> str:
    """One row per model: ours next to the PyTorch reference (README of the subset)."""
    lines = [f"# Degradation: plain nets vs residual twins ({epochs} epochs, {train_size} training "
             f"images, {test_size} test images)", "",
             f"PyTorch reference: same subset and recipe, {REFERENCE_EPOCHS} epochs. Ratio: first over "
             f"last conv |dL/dW| on the first 128 training images, train mode. "
             f"Engine of our runs: {_engines(out, models)}.", "",
             "| model | params | train loss | test acc | ratio at init | ratio at end | "
             "ref. params | ref. train loss | ref. test acc | ref. ratio at init |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in models:
        run = out / name
        rows = _history(run)
        snaps = sorted((run / "gradflow").glob("epoch_*.json"))
        first = _snapshot(run, 0)
        last = GradFlowReport.from_json(json.loads(snaps[-1].read_text())) if snaps else None
        ref_params, ref_loss, ref_acc = REFERENCE.get(name, ("-", "-", "-"))
        params = sum(p.data.size for p in init_model(name).parameters())
        lines.append("| " + " | ".join([
            name, f"{params:,}",
            f"{rows[-1]['train_loss']:.2f}" if rows else "-",
            f"{rows[-1]['test_acc']:.2f}" if rows else "-",
            f"{first.first_last_ratio():.3g}" if first else "-",
            f"{last.first_last_ratio():.3g} (epoch {snaps[-1].stem[6:].lstrip('0') or 0})" if last else "-",
            f"{ref_params:,}" if isinstance(ref_params, int) else ref_params,
            _two_places(ref_loss), _two_places(ref_acc), REFERENCE_RATIOS.get(name, "-")]) + " |")
    return "\n".join(lines) + "\n"


def _engines(out: Path, models) -> str:
    """The engines the runs' epochs were trained on, as recorded in their metrics.json."""
    engines = {row.get("engine") for name in models for row in _history(out / name)}
    engines.discard(None)
    return " and ".join(sorted(engines)) or "not recorded"


def _two_places(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
