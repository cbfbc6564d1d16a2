"""The `numpy-resnet assignment make|grade` subcommands (registered by cli.py)."""

from __future__ import annotations

import argparse
import sys


def _cmd_make(args: argparse.Namespace) -> int:
    from .make import make_student_copy
    from .parts import PARTS, parse_parts

    parts = parse_parts(args.parts)
    result = make_student_copy(args.out, parts, force=args.force)
    print(f"student copy written to {result['out']}")
    for part in parts:
        print(f"  {part:<12} {PARTS[part].points:>3} points  {result['stubs'][part]} function(s) stubbed")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from .grade import format_table, grade, write_json
    from .parts import parse_parts

    results = grade(args.student_dir, parse_parts(args.parts), timeout=args.timeout)
    print(format_table(results))
    if args.verbose:
        for r in results:
            if r.passed < r.tests or r.tests == 0:
                print(f"\n===== {r.part} =====\n{r.output}")
    if args.json:
        write_json(results, args.student_dir, args.json)
        print(f"report written to {args.json}")
    return 0


def _run(handler):
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ImportError as error:
            print(f"assignment: {error} (the student copy has no make/grade tools)", file=sys.stderr)
            return 2
        except (ValueError, FileNotFoundError, FileExistsError) as error:
            print(error, file=sys.stderr)
            return 2
    return run


def add_parser(commands) -> None:
    """Add `assignment make` and `assignment grade` to the numpy-resnet command."""
    p = commands.add_parser("assignment", help="classroom: make a student copy, grade it")
    sub = p.add_subparsers(dest="assignment_command", metavar="ACTION", required=True)

    m = sub.add_parser("make", help="write a student copy with the chosen parts stubbed")
    m.add_argument("out", help="folder to write (numpy_resnet/, tests/, lessons/)")
    m.add_argument("--parts", help="comma-separated parts to stub (default: all)")
    m.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    m.set_defaults(func=_run(_cmd_make))

    g = sub.add_parser("grade", help="run the grading tests of each part against a student copy")
    g.add_argument("student_dir", help="folder holding the student's numpy_resnet/")
    g.add_argument("--parts", help="comma-separated parts to grade (default: all)")
    g.add_argument("--json", help="also write the report to this JSON file")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per part (default 120)")
    g.add_argument("-v", "--verbose", action="store_true", help="print the output of failing parts")
    g.set_defaults(func=_run(_cmd_grade))
