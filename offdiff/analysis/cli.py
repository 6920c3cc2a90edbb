"""`offdiff aggregate RUNS... --out DIR`: the scores CSV, rliable statistics, tables and plots of a collection."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offdiff.analysis.layout import Layout


def _command(args: argparse.Namespace) -> str:
    """The command line that makes this output again, in a canonical form."""
    words = ["offdiff", "aggregate", *map(str, args.runs), "--out", str(args.out)]
    if args.from_csv is not None:
        words += ["--from-csv", str(args.from_csv)]
    if args.layout is not None:
        words += ["--layout", str(args.layout)]
    if args.tau_max is not None:
        words += ["--tau-max", repr(args.tau_max)]
    words += ["--compare-published"] * args.compare_published
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


def _layout(args: argparse.Namespace) -> Layout:
    """The layout file's settings, with the command line's --tau-max and --compare-published on top."""
    from offdiff.analysis.layout import Layout, read_layout  # late, like the report: keeps `offdiff` quick to start

    layout = read_layout(args.layout) if args.layout is not None else Layout()
    if args.tau_max is not None:
        layout = dataclasses.replace(layout, tau_max=args.tau_max)
    return dataclasses.replace(layout, compare_published=True) if args.compare_published else layout


def _aggregate(args: argparse.Namespace) -> int:
    from offdiff.analysis.report import aggregate

    args.out = args.out or _default_out(args)
    result = aggregate(args.out, runs=args.runs, from_csv=args.from_csv, reps=args.reps, seed=args.seed,
                       skip_bad=args.skip_bad, command=_command(args), layout=_layout(args))
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
    p.add_argument("--layout", type=Path, help="YAML of display names, order, domains and options (README: "
                   "'Names, order and the papers' numbers'); aggregate keeps a copy as layout.yaml")
    p.add_argument("--tau-max", type=float, help="right end of the performance profiles' axis, in normalized "
                   "score (default: just past the best score, rounded up to ten)")
    p.add_argument("--compare-published", action="store_true",
                   help="also write published.md/.tex/.csv: the papers' D4RL scores beside the measured ones")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--skip-bad", action="store_true", help="skip corrupt run folders with a warning")
    p.set_defaults(func=_aggregate)
