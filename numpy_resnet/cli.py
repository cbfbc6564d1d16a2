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
"""

from __future__ import annotations

import argparse
import sys


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
            print(f"gradcheck: no layer matches {args.layers}; choose from {names}", file=sys.stderr)
            return 2
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

    if args.resume:
        config = TrainConfig(out=args.resume)
    else:
        fields = TrainConfig.__dataclass_fields__
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
        config.augment = not args.no_augment
        config.train_size = _count_or_none(config.train_size)
        config.test_size = _count_or_none(config.test_size)
    try:
        with use_engine(args.engine):
            fit(config, resume=bool(args.resume), force=args.force, progress=not args.no_progress)
    except FloatingPointError as err:
        print(f"numpy-resnet train: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .checkpoint import read_checkpoint, restore
    from .data import load_cifar10
    from .train import TrainConfig, build_model, evaluate

    state, meta = read_checkpoint(args.checkpoint)
    config = TrainConfig(**meta["config"])
    model = build_model(config)
    restore(state, model)
    data = load_cifar10(args.data_dir or config.data_dir, train_size=10, test_size=args.test_size,
                        seed=config.seed)
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
    from .plot import plot_runs

    path = plot_runs(args.runs, args.output, title=args.title)
    print(f"wrote {path}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .models import get_model
    from .summary import summary

    try:
        input_shape = tuple(int(v) for v in args.input.lower().split("x"))
    except ValueError:
        print(f"summary: --input takes CxHxW such as 3x224x224, got {args.input!r}", file=sys.stderr)
        return 2
    kwargs = {"num_classes": args.num_classes}
    if args.stride_in_1x1:
        kwargs["stride_in_1x1"] = True
    print(summary(get_model(args.model, **kwargs), input_shape))
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
    p.add_argument("--width", type=int, default=16, help="base channels (default 16)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--steps", type=int, default=5, help="timed runs, the median is shown (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before them (default 2)")
    p.add_argument("--threads", type=int, help="worker threads of the fast path, Numba and torch "
                                               "(default: os.cpu_count())")
    p.add_argument("--engine", choices=("fast", "reference"), default="fast",
                   help="what runs our layers: the fast engine (default) or the textbook's own "
                        "code in nn/ (numpy_resnet.use_engine)")
    p.add_argument("--vs-torch", action="store_true", help="the same network and step in PyTorch")
    p.add_argument("--rounds", type=int, default=3,
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
    try:
        for report in gradflow_reports(batch, models, args.checkpoint, seed=args.seed,
                                       shortcut=args.shortcut, width=args.width):
            if not args.quiet:
                print(report.table() + "\n", flush=True)
            reports.append(report)
    except (ValueError, FileNotFoundError) as err:
        print(f"numpy-resnet gradflow: {err}", file=sys.stderr)
        return 2
    print(f"{'model':<24} {'loss':>7} {'convs':>5} {'first/last conv |dL/dW|':>24}")
    for r in reports:
        print(f"{r.model:<24} {r.loss:>7.4f} {len(r.convs()):>5} {r.first_last_ratio():>24.4g}")
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
    except (ValueError, FloatingPointError) as err:
        print(f"numpy-resnet experiment: {err}", file=sys.stderr)
        return 1
    return 0


def _add_gradflow_parsers(commands) -> None:
    from .experiments import DEGRADATION_MODELS, WIDTH16_MODELS

    p = commands.add_parser("gradflow", help="gradient norm at every layer for one batch, and a plot",
                            description="One forward/backward in train mode on the first training "
                                        "images, at initialisation or from a checkpoint: per-layer "
                                        "table, first/last conv gradient ratio, log-scale plot.")
    p.add_argument("--models", nargs="*", default=[], metavar="MODEL",
                   help=f"models at initialisation (default {' '.join(GRADFLOW_MODELS)})")
    p.add_argument("--checkpoint", nargs="*", default=[], metavar="RUN",
                   help="trained models: run folders or checkpoint.npz files")
    p.add_argument("--batch-size", type=int, default=128, help="the first N training images (default 128)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    p.add_argument("--shortcut", choices=["A", "B"], default="B", help="CIFAR nets' shortcut (default B)")
    p.add_argument("--width", type=int, default=16, help="resnet18/34's base channels (default 16)")
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
    p.add_argument("--epochs", type=int, default=30, help="default 30, as the reference")
    p.add_argument("--train-size", type=_size, help="class-balanced subset of the training set "
                                                    "(default: every image; 'all' says so too)")
    p.add_argument("--test-size", type=_size, help="class-balanced subset of the test set (default 'all')")
    p.add_argument("--snapshots", type=int, nargs="*", metavar="EPOCH",
                   help="epochs for gradient-flow snapshots (default 0, middle, last)")
    p.add_argument("--seed", type=int, default=0)
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


def _size(text: str):
    """A subset size for --train-size / --test-size: a positive count, or 'all'."""
    if text.lower() == "all":
        return "all"
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive count or 'all', got {text}")
    return value


def _add_train_parser(commands) -> None:
    from .train import TrainConfig

    d = TrainConfig()
    p = commands.add_parser("train", help="train a ResNet on CIFAR-10",
                            description="Train on CIFAR-10. With no flags: ResNet-18, CIFAR stem, "
                                        "width 16, the whole CIFAR-10 data found.")
    p.add_argument("--model", help=f"model name (default {d.model})")
    p.add_argument("--stem", choices=["cifar", "imagenet"], help=f"default {d.stem}")
    p.add_argument("--width", type=int, help=f"base channels (default {d.width})")
    p.add_argument("--shortcut", choices=["A", "B"], help="CIFAR nets' shortcut option (default B)")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay}")
    p.add_argument("--warmup-epochs", type=int, help=f"default {d.warmup_epochs}")
    p.add_argument("--label-smoothing", type=float, help="default 0")
    p.add_argument("--no-augment", action="store_true", help="no random crop and flip")
    p.add_argument("--train-size", type=_size, help=f"class-balanced subset of the training set "
                                                     f"(default {d.train_size}; 'all' for every image)")
    p.add_argument("--test-size", type=_size, help=f"class-balanced subset of the test set "
                                                   f"(default {d.test_size}; 'all')")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--out", help=f"run folder (default {d.out})")
    p.add_argument("--data-dir", help="a cifar-10-batches-bin folder (default $NUMPY_RESNET_DATA "
                                      "or a download into the cache)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    p.add_argument("--force", action="store_true",
                   help="start over in an --out folder that holds a run, deleting its checkpoint "
                        "and metrics (without it such a folder is refused)")
    _add_engine_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numpy-resnet",
                                     description="Residual networks in pure NumPy.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_train_parser(commands)

    p = commands.add_parser("evaluate", help="test accuracy of a checkpoint, per class, confusion matrix")
    p.add_argument("checkpoint", help="a run folder or its checkpoint.npz")
    p.add_argument("--data-dir")
    p.add_argument("--test-size", type=int, help="class-balanced subset of the test set")
    p.set_defaults(func=_cmd_evaluate)

    p = commands.add_parser("plot", help="loss and accuracy curves of one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (with metrics.json)")
    p.add_argument("-o", "--output", default="curves.png")
    p.add_argument("--title")
    p.set_defaults(func=_cmd_plot)

    p = commands.add_parser("summary", help="per-layer table: output shape, parameters, MACs")
    p.add_argument("model", help="e.g. resnet50, resnet18, resnet56, plain34")
    p.add_argument("--input", default="3x224x224", help="C x H x W (default 3x224x224)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--stride-in-1x1", action="store_true",
                   help="Bottleneck v1: stride on the first 1x1 (the paper's GMACs)")
    p.set_defaults(func=_cmd_summary)

    p = commands.add_parser("gradcheck", help="check every layer's backward against finite differences")
    p.add_argument("layers", nargs="*", metavar="LAYER", help="layer names to check (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6, help="largest relative error that passes")
    p.add_argument("--max-checks", type=int, default=None,
                   help="check at most this many entries per tensor (default: all)")
    p.add_argument("--engine", choices=("both", "reference", "fast"), default="both",
                   help="the textbook's code (reference), the fast twins, or both (default)")
    p.set_defaults(func=_cmd_gradcheck)

    _add_bench_parser(commands)
    _add_gradflow_parsers(commands)
    from .assignment.command import add_parser as add_assignment_parser
    add_assignment_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
