"""Training: the loop every deep-learning course writes, with nothing hidden.

    for each epoch:
        for each mini-batch (x, y):
            logits = model(x)                     forward, each layer keeps its cache
            loss   = criterion(logits, y)
            model.backward(criterion.backward())  dL/dθ lands in every Parameter.grad
            optimizer.step(); schedule.step()     θ ← θ - lr · (momentum-smoothed) grad
        test accuracy, metrics.csv / metrics.json, checkpoint.npz (atomic)

`fit(TrainConfig(...))` runs it; `numpy-resnet train` is its command line. A run can be
stopped at any time (Ctrl-C, even kill -9) and continued with `resume=True`: each epoch's
data order and augmentation depend only on (seed, epoch), so the result equals an
uninterrupted run, to the last bit on the same number of threads (a resume on another says so).

The run folder belongs to one run at a time (run_folder.py): a second run into it is refused,
and so is a new run into a folder holding a saved one, unless `force=True` starts it over.
An epoch whose weights, BatchNorm statistics or momentum hold inf or NaN is not saved.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import run_folder, serialization
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, restore, save_checkpoint
from .data import Loader, load_cifar10, normalize
from .engine import get_engine
from .kernels.threads import get_num_threads
from .models import get_model, is_cifar_model
from .nn import CrossEntropyLoss, Module
from .optim import SGD, WarmupCosine
from .seeding import manual_seed


@dataclass
class TrainConfig:
    """One training run. The defaults are the main job: ResNet-18, CIFAR stem, width 16,
    15 epochs on 5,000 training images (500 per class), tested on 1,000.

    The recipe is He et al.'s, shortened: SGD momentum 0.9, peak lr 0.1 after a linear
    warmup, cosine decay to 0, weight decay 5e-4, batch 128, random crop and flip.
    """
    model: str = "resnet18"
    stem: str = "cifar"
    width: int = 16
    shortcut: str = "B"                 # for the CIFAR nets (resnet20 ... resnet110)
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    label_smoothing: float = 0.0
    augment: bool = True
    train_size: int | None = 5000       # a class-balanced subset; None: every image found
    test_size: int | None = 1000
    seed: int = 0
    out: str | None = "runs/resnet18"
    data_dir: str | None = None

    def model_kwargs(self) -> dict:
        """get_model's keyword arguments: a CIFAR net takes the shortcut option, the others
        the stem and width."""
        if is_cifar_model(self.model):
            return {"num_classes": 10, "shortcut": self.shortcut}
        return {"num_classes": 10, "stem": self.stem, "width": self.width}


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float
    images_per_second: float
    engine: str | None = None           # "fast" or "reference"; None in runs that did not record it
    threads: int | None = None          # worker threads (numpy_resnet.get_num_threads); None: not recorded


def _json_safe(value):
    """NaN and ±inf as None, in dicts and lists too: JSON has no such numbers."""
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


@dataclass
class History:
    config: TrainConfig
    epochs: list[EpochResult] = field(default_factory=list)

    def to_json(self) -> dict:
        """{"config": ..., "history": [row, ...]}, a NaN or inf number as None (JSON null)."""
        return _json_safe({"config": asdict(self.config), "history": [asdict(e) for e in self.epochs]})


def build_model(config: TrainConfig) -> Module:
    manual_seed(config.seed)                    # the same weights for the same seed
    return get_model(config.model, **config.model_kwargs())


def evaluate(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500,
             criterion: CrossEntropyLoss | None = None) -> tuple[float, float, np.ndarray]:
    """x: (N, 3, 32, 32) uint8 -> (loss, accuracy, predictions (N,)), in eval mode."""
    criterion = criterion or CrossEntropyLoss()
    was_training = model.training
    model.eval()
    predictions, total_loss = [], 0.0
    for start in range(0, len(x), batch_size):
        xb = normalize(x[start:start + batch_size])
        logits = model(xb.astype(model.dtype, copy=False))
        total_loss += criterion(logits, y[start:start + batch_size]) * len(xb)
        predictions.append(logits.argmax(axis=1))
    model.train(was_training)
    predictions = np.concatenate(predictions)
    return total_loss / len(x), float((predictions == y).mean()), predictions


def train_one_epoch(model, loader, criterion, optimizer, scheduler, epoch: int,
                    progress: bool = True) -> tuple[float, float, float]:
    """One pass over the training set -> (mean loss, accuracy, seconds)."""
    model.train()
    loader.set_epoch(epoch)
    seen, correct, total_loss = 0, 0, 0.0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not progress,
               unit="batch", dynamic_ncols=True)
    for step, (xb, yb) in enumerate(bar):
        optimizer.zero_grad()
        logits = model(xb)
        loss = criterion(logits, yb)
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss} at epoch {epoch + 1}, step {step + 1} "
                f"(lr {scheduler.get_last_lr()[0]:.4g}); training diverged: "
                f"try a smaller --lr or a longer warmup")
        model.backward(criterion.backward(), need_input_grad=False)    # the images need no dL/dx
        optimizer.step()
        scheduler.step()
        seen += len(yb)
        correct += int((logits.argmax(axis=1) == yb).sum())
        total_loss += loss * len(yb)
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                        img_s=f"{seen / elapsed:.0f}")
    return total_loss / seen, correct / seen, time.perf_counter() - start


def write_metrics(out: Path, history: History) -> None:
    """metrics.json (config and history) and metrics.csv (one row per epoch), atomically.
    metrics.json is strict JSON: a NaN or inf loss is written as null."""
    with serialization.atomic_write(out / "metrics.json") as f:
        f.write(json.dumps(history.to_json(), indent=2, allow_nan=False).encode())
    text = io.StringIO()
    names = list(EpochResult.__dataclass_fields__)
    writer = csv.DictWriter(text, fieldnames=names)
    writer.writeheader()
    for row in history.epochs:
        writer.writerow(asdict(row))
    with serialization.atomic_write(out / "metrics.csv") as f:
        f.write(text.getvalue().encode())


def _make_optimizer(model: Module, config: TrainConfig, steps_per_epoch: int):
    optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                    weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    return optimizer, WarmupCosine(optimizer, warmup_steps=warmup, total_steps=total)


def non_finite_state(model: Module, optimizer=None) -> str | None:
    """The first key of the model's state (weights, BatchNorm statistics), then the optimizer's
    (momentum), whose values include inf or NaN; None if all are finite."""
    parts = [("", model.state_dict())]
    if optimizer is not None:
        parts.append(("optimizer ", optimizer.state_dict()))
    for prefix, state in parts:
        for key, value in state.items():
            value = np.asarray(value)
            if value.dtype.kind in "fc" and not np.isfinite(value).all():
                return prefix + key
    return None


def save_epoch(out: Path, model: Module, optimizer, scheduler, history: History) -> None:
    """checkpoint.npz, then the metrics, after the epoch just finished (the last in history).

    A state holding inf or NaN is not saved (FloatingPointError): the checkpoint keeps the last
    good epoch, so a resume never starts from a diverged state. A failed write (a full disk)
    raises a one-line OSError; the atomic writes leave the earlier files intact.
    """
    done = history.epochs[-1].epoch
    checkpoint = out / CHECKPOINT_NAME
    kept = f"{checkpoint} keeps epoch {done - 1}" if done > 1 else "nothing was saved"
    bad = non_finite_state(model, optimizer)
    if bad is not None:
        raise FloatingPointError(f"epoch {done} left inf or NaN in {bad}; training diverged and "
                                 f"the epoch was not saved ({kept}): try a smaller --lr or a "
                                 f"longer warmup")
    try:
        save_checkpoint(checkpoint, model, optimizer, scheduler, {**history.to_json(), "epoch": done})
    except OSError as err:
        raise run_folder.one_line(err, f"could not save epoch {done} to {checkpoint}: "
                                       f"{err.strerror or err}; {kept}") from None
    try:
        write_metrics(out, history)
    except OSError as err:
        raise run_folder.one_line(err, f"could not write the metrics of epoch {done} in {out}: "
                                       f"{err.strerror or err}; {checkpoint} holds the epoch and "
                                       f"--resume {out} rewrites them") from None


def _start_over(out: Path, force: bool, log) -> None:
    """A new run into `out`: refuse a folder holding a run, unless forced to delete it."""
    existing = run_folder.run_files(out)
    if existing and not force:
        raise FileExistsError(f"{out} already holds a run ({', '.join(existing)}): continue it "
                              f"with --resume {out}, or start it over with --force")
    if existing:
        run_folder.remove_run(out)
        log(f"--force: removed {', '.join(existing)} from {out}")


def _note_other_threads(history: History, log) -> None:
    """Bit-exact resume needs the thread count the run had (the workers split sums differently)."""
    before = next((e.threads for e in reversed(history.epochs) if e.threads is not None), None)
    if before is not None and before != get_num_threads():
        log(f"note: the run so far trained on {before} thread(s), this resume on "
            f"{get_num_threads()}: results may differ from an uninterrupted run in the last bits")


def fit(config: TrainConfig, data=None, resume: bool = False, force: bool = False,
        epochs: int | None = None, progress: bool = True, log=print,
        on_epoch_end=None) -> History:
    """Train `config.model` on CIFAR-10 and return the per-epoch history.

    data: a loaded CIFAR10 tuple (default: load_cifar10 with the config's sizes).
    resume: continue from `config.out`/checkpoint.npz (the config stored there wins).
    force: start a new run in a folder that holds one, deleting its checkpoint and metrics;
    without it such a folder is refused (FileExistsError), as is one another run owns.
    epochs: the run's length in place of the config's; with resume, it lengthens (or
    shortens, down to the epochs trained) the stored run, whose lr schedule becomes that of
    a run this long from the step it reached.
    on_epoch_end(epoch, model): called after each epoch is saved (epoch counts from 1),
    e.g. to take a gradient-flow snapshot; it must leave the model as it found it.
    It runs on the engine that is set (numpy_resnet.use_engine); each epoch's row records which.
    """
    if resume and force:
        raise ValueError("fit: resume continues the run in config.out and force starts it over; "
                         "choose one")
    if config.out is None:
        if resume:
            raise ValueError("fit: resume=True needs config.out, the run folder")
        return _train(config, None, None, epochs, data, progress, log, on_epoch_end)
    out = Path(config.out)
    if resume and out.is_file():
        raise NotADirectoryError(f"{out} is a file; resume takes a run folder")
    if resume and not out.is_dir():
        raise FileNotFoundError(f"no run folder at {out} to resume")
    made = [] if resume else run_folder.make(out)
    try:
        with run_folder.owned(out, log):
            stale = run_folder.remove_stale_tmp_files(out)
            if stale:
                log(f"note: removed {len(stale)} temporary file(s) left by an interrupted write: "
                    f"{', '.join(path.name for path in stale)}")
            if resume:
                checkpoint = read_checkpoint(out / CHECKPOINT_NAME)
            else:
                _start_over(out, force, log)
                checkpoint = None
            return _train(config, out, checkpoint, epochs, data, progress, log, on_epoch_end)
    except BaseException:
        run_folder.remove_empty(made)              # a mistake found early leaves no empty folder
        raise


def _train(config: TrainConfig, out: Path | None, checkpoint: tuple | None, epochs: int | None,
           data, progress: bool, log, on_epoch_end) -> History:
    """fit's loop, once the run folder (if any) is ours; checkpoint: (state, meta) to resume."""
    stored_epochs = None
    if checkpoint is not None:
        state, meta = checkpoint
        config = TrainConfig(**{**meta["config"], "out": str(out)})
        stored_epochs, done = config.epochs, len(meta["history"])
        if epochs is not None and epochs < done:
            raise ValueError(f"fit: epochs={epochs}, but {out} has trained {done} epochs already")
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if data is None:
        data = load_cifar10(config.data_dir, config.train_size, config.test_size, seed=config.seed)
    model = build_model(config)
    loader = Loader(data.x_train, data.y_train, config.batch_size, shuffle=True,
                    augment=config.augment, seed=config.seed)
    optimizer, scheduler = _make_optimizer(model, config, len(loader))
    criterion = CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history = History(config)
    if checkpoint is not None:
        restore(state, model, optimizer, scheduler)
        bad = non_finite_state(model, optimizer)
        if bad is not None:
            raise ValueError(f"{out / CHECKPOINT_NAME} holds inf or NaN in {bad}: it was saved "
                             f"after training diverged; start the run over with --force")
        history.epochs = [EpochResult(**row) for row in meta["history"]]
        log(f"resuming {out} after epoch {len(history.epochs)} of {config.epochs}, "
            f"on the {get_engine()} engine")
        if config.epochs != stored_epochs:
            log(f"the run now lasts {config.epochs} epochs, not {stored_epochs}: its lr schedule "
                f"is that of a {config.epochs}-epoch run, so epoch {len(history.epochs) + 1} "
                f"starts at lr {scheduler.get_last_lr()[0]:.4g} and the lr reaches 0 at the end")
        _note_other_threads(history, log)
        # the checkpoint is written before the metrics: a kill between the two leaves the
        # metrics an epoch behind, and the checkpoint's history is the one to trust
        write_metrics(out, history)
    else:
        where = f" -> {out}" if out is not None else ""
        epochs = f"{config.epochs} epoch{'' if config.epochs == 1 else 's'}"
        log(f"training {config.model} on the {get_engine()} engine: {epochs}, "
            f"{len(data.x_train)} training images{where}")

    for epoch in range(len(history.epochs), config.epochs):
        lr = scheduler.get_last_lr()[0]
        try:
            train_loss, train_acc, seconds = train_one_epoch(
                model, loader, criterion, optimizer, scheduler, epoch, progress)
        except KeyboardInterrupt:
            if out is not None and epoch > 0:
                log(f"\ninterrupted in epoch {epoch + 1}; {out / CHECKPOINT_NAME} holds epoch "
                    f"{epoch} and is intact: continue with --resume {out}")
            elif out is not None:
                log(f"\ninterrupted in epoch 1; nothing was saved in {out}")
            raise
        test_loss, test_acc, _ = evaluate(model, data.x_test, data.y_test)
        result = EpochResult(epoch + 1, train_loss, train_acc, test_loss, test_acc, lr, seconds,
                             len(data.x_train) / seconds, get_engine(), get_num_threads())
        history.epochs.append(result)
        log(f"epoch {epoch + 1:>3}/{config.epochs}  train loss {train_loss:.4f}  "
            f"train acc {train_acc:.4f}  test acc {test_acc:.4f}  "
            f"({result.images_per_second:.0f} img/s)")
        if out is not None:
            save_epoch(out, model, optimizer, scheduler, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model)
    return history
