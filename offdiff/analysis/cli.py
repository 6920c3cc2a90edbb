"""`offdiff aggregate RUNS... --out DIR`: the scores CSV, rliable statistics, tables and plots of a collection."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _command(args: argparse.Namespace) -> str:
    """The command line that makes this output again, in a canonical form."""
    words = ["offdiff", "aggregate", *map(str, args.runs), "--out", str(args.out)]
    if args.from_csv is not None:
        words += ["--from-csv", str(args.from_csv)]
    words += ["--reps", str(args.reps), "--seed", str(args.seed)] + (["--skip-bad"] if args.skip_bad else [])
    return shlex.join(words)


def _default_out(args: argparse.Namespace) -> Path:
    """results/<name of the one RUNS folder> (runs/quickstart -> results/quickstart), or the CSV's own folder."""
    from offdiff.errors import OffdiffError

    if args.from_csv is not None:
        return args.from_csv.parent
    if len(args.runs) != 1:
        raise OffdiffError("give --out, or exactly one RUNS folder (e.g. runs/quickstart: results/quickstart is the "
                           "default), or --from-csv CSV")
    return Path("results") / args.runs[0].resolve().name


def _aggregate(args: argparse.Namespace) -> int:
    from offdiff.analysis.report import aggregate

    args.out = args.out or _default_out(args)
    result = aggregate(args.out, runs=args.runs, from_csv=args.from_csv, reps=args.reps, seed=args.seed,
                       skip_bad=args.skip_bad, command=_command(args))
    for run_dir, reason in result.skipped:
        print(f"offdiff: warning: skipped {run_dir}: {reason}", file=sys.stderr)
    print(f"wrote {len(result.files)} files to {result.out}: {', '.join(result.files)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `aggregate` command to the `offdiff` parser."""
    p = subparsers.add_parser("aggregate", help="collect runs into a scores CSV, rliable statistics, tables, plots")
    p.add_argument("runs", nargs="*", type=Path, help="run folders, or folders holding them (e.g. runs/<grid>)")
    p.add_argument("--out", type=Path, help="output folder (default: results/<name of RUNS>, e.g. results/quickstart "
                                            "for runs/quickstart; with --from-csv, the CSV's folder)")
    p.add_argument("--from-csv", type=Path, help="regenerate everything from this scores CSV instead of runs")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--skip-bad", action="store_true", help="skip corrupt run folders with a warning")
    p.set_defaults(func=_aggregate)
