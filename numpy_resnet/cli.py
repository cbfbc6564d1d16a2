"""The `numpy-resnet` command (also `python -m numpy_resnet`).

    numpy-resnet train [--model resnet18 ...]   train on CIFAR-10 (the main job)
    numpy-resnet evaluate RUN_OR_CHECKPOINT     test accuracy, per class, confusion matrix
    numpy-resnet plot RUN [RUN ...] -o FILE     loss and accuracy curves
    numpy-resnet summary MODEL [--input 3x224x224]   per-layer table, parameters and MACs
    numpy-resnet gradcheck [LAYER ...]          finite-difference check of every layer, both engines
    numpy-resnet bench [--vs-torch] [--json F]  layer and step timings, compile time, memory
    numpy-resnet gradflow [--models M ...]      gradient norm at every layer, one batch, a plot
    numpy-resnet experiment degradation         plain vs residual twins trained, summary.md
    numpy-resnet assignment make|grade ...      student copy with stubs; grade it part by part

One error policy: a user's mistake (a ValueError, OSError or KeyError raised by a command, or a
bad argument) is one line on stderr, `numpy-resnet COMMAND: what was wrong`, and exit status 2;
`--debug` or NUMPY_RESNET_DEBUG=1 shows the traceback instead. Any other exception is a bug
and keeps its traceback; Ctrl-C prints "interrupted" and exits with 130.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from .cli_types import (
    image_shape,
    model_name,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    subset_size,
)

# What a command raises for a user's mistake: a bad value, a file that is missing, unreadable
# or unwritable (ENOSPC too), a key a file lacks.
USER_ERRORS = (ValueError, OSError, KeyError)


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    import numpy as np

    from .engine import use_engine
    from .gradcheck import gradcheck
    from .gradcheck_cases import all_cases

    cases = all_cases()
    if args.layers:
        wanted = [w.lower() for w in args.layers]
        cases = [c for c in cases if any(c.name.lower().startswith(w) for w in wanted)]
        if not cases:
            names = sorted({c.name.split()[0] for c in all_cases()})
            raise ValueError(f"no layer matches {args.layers}; choose from {names}")
    engines = ("reference", "fast") if args.engine == "both" else (args.engine,)
    header = (f"{'engine':<9} {'layer':<32} {'mode':<5} {'tensor':<20} {'checked':>7} {'kinks':>5} "
              f"{'max rel err':>11}  ok")
    print(header)
    print("-" * len(header))
    failed = 0
    for engine in engines:                  # the textbook's own code first, then the fast twins
        with use_engine(engine):
            for case in cases:
                rng = np.random.default_rng(args.seed)
                report = gradcheck(case.make(), *case.inputs(rng), train=case.train, seed=args.seed,
                                   max_checks=args.max_checks)
                for t in report.tensors:
                    ok = t.max_rel_error < args.tol
                    failed += not ok
                    print(f"{engine:<9} {case.name:<32} {report.mode:<5} {t.name:<20} {t.checked:>7} "
                          f"{t.kinks:>5} {t.max_rel_error:>11.2e}  {'yes' if ok else 'NO'}")
    print("-" * len(header))
    print(f"float64, central differences h=1e-5, random upstream gradient; pass: max relative "
          f"error < {args.tol:g}. {'All passed.' if not failed else f'{failed} FAILED.'}")
    return 1 if failed else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine import use_engine
    from .train import TrainConfig, fit

    given = _given_config(args)
    if args.resume and args.force:
        raise ValueError("--resume continues a run and --force starts one over; choose one")
    if args.resume:
        config, epochs = _resume_config(args.resume, given)
    else:
        config, epochs = TrainConfig(**given), None
        _check_model_flags(config.model, given)
    try:
        with use_engine(args.engine):
            fit(config, resume=bool(args.resume), force=args.force, progress=not args.no_progress,
                epochs=epochs)
    except FloatingPointError as err:
        print(f"numpy-resnet train: {err}", file=sys.stderr)
        return 1
    return 0


def _given_config(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the user's flags set, and nothing else."""
    from .train import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    for size in ("train_size", "test_size"):
        if size in given:
            given[size] = _count_or_none(given[size])
    if args.no_augment:
        given["augment"] = False
    return given


def _check_model_flags(model: str, given: dict) -> None:
    """Refuse a flag the model does not take, rather than ignore it (TrainConfig.model_kwargs):
    --stem and --width shape the ImageNet-style nets, --shortcut the CIFAR nets."""
    from .models import is_cifar_model

    if is_cifar_model(model):
        wrong = [f"--{name}" for name in ("stem", "width") if name in given]
        if wrong:
            raise ValueError(f"{' and '.join(wrong)} {'apply' if len(wrong) > 1 else 'applies'} to "
                             f"the ImageNet-style nets (resnet18, resnet50 ...), not to {model}, a "
                             f"CIFAR net with its own 3x3 stem and 16, 32, 64 channels; it takes "
                             f"--shortcut A or B")
    elif "shortcut" in given:
        raise ValueError(f"--shortcut applies to the CIFAR nets (resnet20 ... resnet1202), not to "
                         f"{model}, which has its own; it takes --stem and --width")


def _resume_config(run: str, given: dict):
    """--resume RUN continues RUN under the recipe stored in its checkpoint -> (config, epochs).

    Flags that repeat the recipe are accepted; --epochs N other than the stored number changes
    the length of the run, as long as N is not fewer than the epochs already trained (fit
    recomputes the lr schedule for N epochs); any other change is refused, since fit would
    ignore it.
    """
    from .checkpoint import CHECKPOINT_NAME, read_checkpoint
    from .train import TrainConfig

    folder = Path(run)
    if folder.name == CHECKPOINT_NAME and folder.is_file():
        folder = folder.parent                      # the run's checkpoint names its run
    if folder.is_file():
        raise ValueError(f"--resume {run}: a file, not a run folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"--resume {run}: no such run folder")
    _, meta = read_checkpoint(folder)
    stored, done = meta["config"], len(meta["history"])
    changed = [f"{_flag(key, value)} (the run has {key}={stored.get(key)!r})"
               for key, value in given.items()
               if key not in ("epochs", "out") and value != stored.get(key)]
    if "out" in given and Path(given["out"]).resolve() != folder.resolve():
        changed.append(f"--out {given['out']}")
    if changed:
        raise ValueError(f"--resume {run} goes on with the run's own recipe, so it cannot take "
                         f"{', '.join(changed)}; only --epochs changes a run (start a new one "
                         f"with another --out)")
    epochs = given.get("epochs")
    if epochs is not None and epochs < done:
        raise ValueError(f"--resume {run} --epochs {epochs}: the run has trained {done} epochs "
                         f"already; give {done} or more")
    _check_model_flags(stored["model"], given)
    return TrainConfig(out=str(folder)), epochs


def _flag(key: str, value) -> str:
    """A config field as its flag was typed: ("lr", 0.5) -> "--lr 0.5"."""
    if key == "augment":
        return "--no-augment"
    return f"--{key.replace('_', '-')} {'all' if value is None else value}"    # None: a size 'all'


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .checkpoint import read_checkpoint, restore
    from .data import load_cifar10
    from .train import TrainConfig, build_model, evaluate

    state, meta = read_checkpoint(args.checkpoint)
    config = TrainConfig(**meta["config"])
    model = build_model(config)
    restore(state, model)
    data = load_cifar10(args.data_dir or config.data_dir, train_size=10,
                        test_size=_count_or_none(args.test_size), seed=config.seed)
    loss, accuracy, predictions = evaluate(model, data.x_test, data.y_test)
    k = len(data.classes)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (data.y_test, predictions), 1)
    print(f"{config.model} after {meta.get('epoch', '?')} epochs on {len(data.y_test)} test images: "
          f"accuracy {accuracy:.4f}, loss {loss:.4f}\n")
    print(f"{'class':<12} {'images':>6} {'accuracy':>8}")
    for c, name in enumerate(data.classes):
        total = confusion[c].sum()
        print(f"{name:<12} {total:>6} {confusion[c, c] / max(total, 1):>8.3f}")
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    print(" " * 12 + " ".join(f"{name[:5]:>5}" for name in data.classes))
    for c, name in enumerate(data.classes):
        print(f"{name:<12}" + " ".join(f"{n:>5}" for n in confusion[c]))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from matplotlib.figure import Figure

    from .plot import plot_runs

    formats = sorted(Figure().canvas.get_supported_filetypes())
    extension = Path(args.output).suffix.lstrip(".").lower()
    if extension not in formats:
        raise ValueError(f"-o {args.output}: the extension names the image format; expected one "
                         f"of .{', .'.join(formats)}")
    path = plot_runs(args.runs, args.output, title=args.title)
    print(f"wrote {path}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .models import get_model
    from .summary import summary

    kwargs = {"num_classes": args.num_classes}
    if args.stride_in_1x1:
        kwargs["stride_in_1x1"] = True
    print(summary(get_model(args.model, **kwargs), args.input))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .bench import BenchConfig, format_report, run_bench

    config = BenchConfig(width=args.width, batch_size=args.batch_size, steps=args.steps,
                         warmup=args.warmup, threads=args.threads, engine=args.engine,
                         vs_torch=args.vs_torch,
                         eval_only=args.eval, compile_time=not args.skip_compile,
                         rounds=args.rounds, torch_same_malloc=args.torch_same_malloc)
    report = run_bench(config, log=lambda message: print(message, file=sys.stderr))
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def _add_bench_parser(commands) -> None:
    p = commands.add_parser("bench", help="time every layer, a training step, Numba's compile, memory",
                            description="Benchmark ResNet-18 (CIFAR stem, 10 classes): each distinct "
                                        "layer, the training step and inference, the step's time by "
                                        "layer type, the sgemm ceiling, Numba's compile time and peak "
                                        "memory; medians of --steps runs.")
    p.add_argument("--width", type=positive_int, default=16, help="base channels (default 16)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="default 128")
    p.add_argument("--steps", type=positive_int, default=5,
                   help="timed runs, the median is shown (default 5)")
    p.add_argument("--warmup", type=nonnegative_int, default=2,
                   help="untimed runs before them (default 2)")
    p.add_argument("--threads", type=positive_int,
                   help="worker threads of the fast path, Numba and torch (default: os.cpu_count())")
    p.add_argument("--engine", choices=("fast", "reference"), default="fast",
                   help="what runs our layers: the fast engine (default) or the textbook's own "
                        "code in nn/ (numpy_resnet.use_engine)")
    p.add_argument("--vs-torch", action="store_true", help="the same network and step in PyTorch")
    p.add_argument("--rounds", type=nonnegative_int, default=3,
                   help="with --vs-torch: time our step and PyTorch's in turn this many times; the "
                        "ratio is the median of the rounds' (default 3; 0: one measurement each)")
    p.add_argument("--torch-same-malloc", action="store_true",
                   help="with --vs-torch: give PyTorch's process the glibc malloc thresholds "
                        "numpy-resnet sets for itself (kernels/memory.py); by default PyTorch "
                        "runs as installed")
    p.add_argument("--json", metavar="FILE", help="also write every number, config and machine info")
    p.add_argument("--eval", action="store_true", help="inference only: forward passes in eval mode")
    p.add_argument("--skip-compile", action="store_true",
                   help="do not measure Numba's compile time (compiling from scratch takes a while)")
    p.set_defaults(func=_cmd_bench)


GRADFLOW_MODELS = ("resnet56", "plain56", "resnet110", "plain110")


def _cmd_gradflow(args: argparse.Namespace) -> int:
    from .experiments import first_batch, gradflow_reports, plot_gradflow

    models = args.models if args.models or args.checkpoint else GRADFLOW_MODELS
    batch = first_batch(args.data_dir, args.batch_size)
    reports = []
    for report in gradflow_reports(batch, models, args.checkpoint, seed=args.seed,
                                   shortcut=args.shortcut, width=args.width):
        if not args.quiet:
            print(report.table() + "\n", flush=True)
        reports.append(report)
    # cos(dL/dx_l, dL/dx_L): how much of the stage's top gradient reaches each block's input
    print(f"{'model':<24} {'loss':>7} {'convs':>5} {'first/last conv |dL/dW|':>24} "
          f"{'mean cos(l, L)':>14}")
    for r in reports:
        cosines = r.direct_cosines()
        cosine = f"{cosines.mean():.4f}" if len(cosines) else "-"
        print(f"{r.model:<24} {r.loss:>7.4f} {len(r.convs()):>5} {r.first_last_ratio():>24.4g} "
              f"{cosine:>14}")
    print(f"wrote {plot_gradflow(reports, args.output)}")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from .engine import use_engine
    from .experiments import DEGRADATION_MODELS, WIDTH16_MODELS, degradation

    models = args.models or DEGRADATION_MODELS + (WIDTH16_MODELS if args.width16 else ())
    try:
        with use_engine(args.engine):
            degradation(args.out, models, epochs=args.epochs,
                        train_size=_count_or_none(args.train_size),
                        test_size=_count_or_none(args.test_size), seed=args.seed,
                        data_dir=args.data_dir, snapshot_epochs=args.snapshots,
                        progress=not args.no_progress)
    except FloatingPointError as err:
        print(f"numpy-resnet experiment: {err}", file=sys.stderr)
        return 1
    return 0


def _add_gradflow_parsers(commands) -> None:
    from .experiments import DEGRADATION_MODELS, WIDTH16_MODELS

    p = commands.add_parser("gradflow", help="gradient norm at every layer for one batch, and a plot",
                            description="One forward/backward in train mode on the first training "
                                        "images, at initialisation or from a checkpoint: per-layer "
                                        "table, first/last conv gradient ratio, each block's "
                                        "dL/dx_l against its stage's dL/dx_L (the identity "
                                        "mapping), log-scale plot.")
    p.add_argument("--models", nargs="*", default=[], metavar="MODEL",
                   help=f"models at initialisation (default {' '.join(GRADFLOW_MODELS)})")
    p.add_argument("--checkpoint", nargs="*", default=[], metavar="RUN",
                   help="trained models: run folders or checkpoint.npz files")
    p.add_argument("--batch-size", type=positive_int, default=128,
                   help="the first N training images (default 128)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="initialisation seed (default 0)")
    p.add_argument("--shortcut", choices=["A", "B"], default="B", help="CIFAR nets' shortcut (default B)")
    p.add_argument("--width", type=positive_int, default=16,
                   help="resnet18/34's base channels (default 16)")
    p.add_argument("--data-dir", help="a cifar-10-batches-bin folder (default $NUMPY_RESNET_DATA)")
    p.add_argument("-o", "--output", default="gradflow.png")
    p.add_argument("-q", "--quiet", action="store_true", help="only the ratios, no per-layer tables")
    p.set_defaults(func=_cmd_gradflow)

    p = commands.add_parser("experiment", help="degradation: plain nets vs residual twins, trained",
                            description="Train plain and residual twins with one recipe, snapshot "
                                        "gradient flow, write curves, a plot and summary.md. "
                                        "Finished runs are skipped, stopped ones resumed.")
    p.add_argument("name", choices=["degradation"])
    p.add_argument("--models", nargs="*", metavar="MODEL",
                   help=f"default {' '.join(DEGRADATION_MODELS)}")
    p.add_argument("--width16", action="store_true", help=f"also {'/'.join(WIDTH16_MODELS)}, width 16")
    p.add_argument("--epochs", type=positive_int, default=30, help="default 30, as the reference")
    p.add_argument("--train-size", type=subset_size,
                   help="class-balanced subset of the training set (default: every image; 'all' "
                        "says so too)")
    p.add_argument("--test-size", type=subset_size,
                   help="class-balanced subset of the test set (default 'all')")
    p.add_argument("--snapshots", type=nonnegative_int, nargs="*", metavar="EPOCH",
                   help="epochs for gradient-flow snapshots (default 0, middle, last)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--data-dir", help="a cifar-10-batches-bin folder (default $NUMPY_RESNET_DATA)")
    p.add_argument("--out", default="runs/degradation")
    _add_engine_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_experiment)


def _add_engine_option(p: argparse.ArgumentParser) -> None:
    from .engine import ENGINES

    p.add_argument("--engine", choices=ENGINES, default="fast",
                   help="what runs the layers: the fast engine (default) or the textbook's own "
                        "code in nn/ (numpy_resnet.use_engine)")


def _count_or_none(size):
    """What a --train-size / --test-size gives the library: a count, or None for 'all'."""
    return None if size in (None, "all") else size


def _add_train_parser(commands) -> None:
    from .train import TrainConfig

    d = TrainConfig()
    p = commands.add_parser("train", help="train a ResNet on CIFAR-10",
                            description="Train on CIFAR-10. With no flags: ResNet-18, CIFAR stem, "
                                        "width 16, the whole CIFAR-10 data found.")
    p.add_argument("--model", type=model_name, help=f"model name (default {d.model})")
    p.add_argument("--stem", choices=["cifar", "imagenet"],
                   help=f"the ImageNet-style nets' stem (default {d.stem})")
    p.add_argument("--width", type=positive_int,
                   help=f"the ImageNet-style nets' base channels (default {d.width})")
    p.add_argument("--shortcut", choices=["A", "B"], help="CIFAR nets' shortcut option (default B)")
    p.add_argument("--epochs", type=positive_int,
                   help=f"default {d.epochs}; with --resume, a longer (or shorter) run")
    p.add_argument("--batch-size", type=positive_int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=positive_float, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--weight-decay", type=nonnegative_float, help=f"default {d.weight_decay}")
    p.add_argument("--warmup-epochs", type=nonnegative_int, help=f"default {d.warmup_epochs}")
    p.add_argument("--label-smoothing", type=float, help="default 0")
    p.add_argument("--no-augment", action="store_true", help="no random crop and flip")
    p.add_argument("--train-size", type=subset_size,
                   help=f"class-balanced subset of the training set (default {d.train_size}; 'all' "
                        f"for every image)")
    p.add_argument("--test-size", type=subset_size,
                   help=f"class-balanced subset of the test set (default {d.test_size}; 'all')")
    p.add_argument("--seed", type=nonnegative_int, help=f"default {d.seed}")
    p.add_argument("--out", help=f"run folder (default {d.out})")
    p.add_argument("--data-dir", help="a cifar-10-batches-bin folder (default $NUMPY_RESNET_DATA "
                                      "or a download into the cache)")
    p.add_argument("--resume", metavar="RUN",
                   help="continue the run in this folder, with its own recipe; --epochs changes "
                        "its length (the lr schedule is recomputed for it)")
    p.add_argument("--force", action="store_true",
                   help="start over in an --out folder that holds a run, deleting its checkpoint "
                        "and metrics (without it such a folder is refused)")
    _add_engine_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with a usage mistake told in one line and exit status 2:
    `numpy-resnet train: --epochs must be a positive integer, got '0'`."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument ([^:]+): ", r"\1 ", message)
        self.exit(2, f"{self.prog}: {message}\n")


_DEBUG_HELP = "on an error, show Python's traceback instead of one line (or NUMPY_RESNET_DEBUG=1)"


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """--debug after any command too (`numpy-resnet train --debug ...`): each subcommand's
    parser takes it, setting it only when given so that it never hides the global one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in set(action.choices.values()):
                command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                     help=_DEBUG_HELP)
                _add_debug_flag(command)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="numpy-resnet", description="Residual networks in pure NumPy.")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_train_parser(commands)

    p = commands.add_parser("evaluate", help="test accuracy of a checkpoint, per class, confusion matrix")
    p.add_argument("checkpoint", help="a run folder or its checkpoint.npz")
    p.add_argument("--data-dir")
    p.add_argument("--test-size", type=subset_size,
                   help="class-balanced subset of the test set (default 'all')")
    p.set_defaults(func=_cmd_evaluate)

    p = commands.add_parser("plot", help="loss and accuracy curves of one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (with metrics.json)")
    p.add_argument("-o", "--output", default="curves.png")
    p.add_argument("--title")
    p.set_defaults(func=_cmd_plot)

    p = commands.add_parser("summary", help="per-layer table: output shape, parameters, MACs")
    p.add_argument("model", help="e.g. resnet50, resnet18, resnet56, plain34")
    p.add_argument("--input", type=image_shape, default="3x224x224",
                   help="C x H x W (default 3x224x224)")
    p.add_argument("--num-classes", type=positive_int, default=1000)
    p.add_argument("--stride-in-1x1", action="store_true",
                   help="Bottleneck v1: stride on the first 1x1 (the paper's GMACs)")
    p.set_defaults(func=_cmd_summary)

    p = commands.add_parser("gradcheck", help="check every layer's backward against finite differences")
    p.add_argument("layers", nargs="*", metavar="LAYER", help="layer names to check (default: all)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--tol", type=positive_float, default=1e-6,
                   help="largest relative error that passes")
    p.add_argument("--max-checks", type=positive_int, default=None,
                   help="check at most this many entries per tensor (default: all)")
    p.add_argument("--engine", choices=("both", "reference", "fast"), default="both",
                   help="the textbook's code (reference), the fast twins, or both (default)")
    p.set_defaults(func=_cmd_gradcheck)

    _add_bench_parser(commands)
    _add_gradflow_parsers(commands)
    from .assignment.command import add_parser as add_assignment_parser
    add_assignment_parser(commands)
    _add_debug_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command -> its exit status; a user's mistake is one line on stderr and status 2."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as exit:              # --help (0) or a usage mistake (2), already printed
        return exit.code
    if unknown:                             # named here, where the command is known
        command = f" {args.command}" if getattr(args, "command", None) else ""
        print(f"numpy-resnet{command}: unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if args.debug or os.environ.get("NUMPY_RESNET_DEBUG", "") not in ("", "0"):
            raise
        print(f"numpy-resnet {args.command}: {_one_line(err, args.command)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException, command: str) -> str:
    """The error's message on one line, without a repeat of the command's name."""
    if isinstance(err, OSError) and err.strerror:       # as raised by open(): name the path
        paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
        text = f"{paths}: {err.strerror}" if paths else err.strerror
    elif isinstance(err, KeyError) and len(err.args) == 1 and not str(err.args[0]).count(" "):
        text = f"no {err.args[0]!r} entry"              # a bare key, e.g. meta["config"]
    elif isinstance(err, KeyError) and err.args:
        text = str(err.args[0])                         # a sentence, not a key
    else:
        text = str(err)
    text = " ".join(text.split())
    text = text.removeprefix(f"{command}: ")
    return text or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
