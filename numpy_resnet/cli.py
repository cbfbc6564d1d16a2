"""The `numpy-resnet` command (also `python -m numpy_resnet`).

    numpy-resnet gradcheck [LAYER ...]     finite-difference check of every layer, as a table
"""

from __future__ import annotations

import argparse
import sys


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    import numpy as np

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
    header = f"{'layer':<32} {'mode':<5} {'tensor':<20} {'checked':>7} {'kinks':>5} {'max rel err':>11}  ok"
    print(header)
    print("-" * len(header))
    failed = 0
    for case in cases:
        rng = np.random.default_rng(args.seed)
        report = gradcheck(case.make(), *case.inputs(rng), train=case.train, seed=args.seed,
                           max_checks=args.max_checks)
        for t in report.tensors:
            ok = t.max_rel_error < args.tol
            failed += not ok
            print(f"{case.name:<32} {report.mode:<5} {t.name:<20} {t.checked:>7} {t.kinks:>5} "
                  f"{t.max_rel_error:>11.2e}  {'yes' if ok else 'NO'}")
    print("-" * len(header))
    print(f"float64, central differences h=1e-5, random upstream gradient; pass: max relative "
          f"error < {args.tol:g}. {'All passed.' if not failed else f'{failed} FAILED.'}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numpy-resnet",
                                     description="Residual networks in pure NumPy.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser("gradcheck", help="check every layer's backward against finite differences")
    p.add_argument("layers", nargs="*", metavar="LAYER", help="layer names to check (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6, help="largest relative error that passes")
    p.add_argument("--max-checks", type=int, default=None,
                   help="check at most this many entries per tensor (default: all)")
    p.set_defaults(func=_cmd_gradcheck)
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
