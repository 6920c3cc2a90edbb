"""`offdiff grid submit | status | resubmit`: the harness's subcommands, registered into `offdiff`'s parser."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from offdiff.harness.profile import EXECUTORS


def _grid(args: argparse.Namespace) -> int:
    from offdiff.harness.grid import expand, load_grid
    from offdiff.harness.profile import load_profile
    from offdiff.harness.record import harness_dir
    from offdiff.harness.status import report, run_states
    from offdiff.harness.submit import submit

    grid = load_grid(Path(args.grid))
    if getattr(args, "keep", None):
        grid = dataclasses.replace(grid, keep=args.keep)
    runs_root = Path(args.runs_dir).resolve()
    if args.grid_command == "status":
        folder = harness_dir(runs_root, grid.name)
        print("\n".join(report(run_states(expand(grid, runs_root), folder), folder.parent)))
        return 0
    profile = dataclasses.replace(load_profile(Path(args.profile), executor=args.executor), **grid.resources)
    return submit(grid, profile, runs_root, only_failed=args.grid_command == "resubmit", dry_run=args.dry_run)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `offdiff grid ...` to the top-level parser's subcommands."""
    grid = subparsers.add_parser("grid", help="benchmark grids: submit (local or SLURM), status, resubmit failures")
    commands = grid.add_subparsers(dest="grid_command", required=True)
    for name, text in (("submit", "submit every run that is not done and not queued"),
                       ("resubmit", "submit the failed runs again (never touches finished ones)")):
        p = commands.add_parser(name, help=text)
        p.add_argument("grid", help="grid spec, e.g. benchmarks/grids/quickstart.yaml")
        p.add_argument("--profile", required=True, help="cluster profile, e.g. slurm/profiles/local.yaml")
        p.add_argument("--executor", choices=EXECUTORS, help="overrides the profile's executor")
        p.add_argument("--dry-run", action="store_true", help="print the plan (runs, jobs, arrays, GPU-hours) only")
        p.add_argument("--runs-dir", default="runs")
        p.add_argument("--keep", choices=("all", "final"),
                       help="final: finished runs keep only their final weights (weights.pt; default: the grid's "
                            "`keep:`, else all)")
    s = commands.add_parser("status", help="done / running / pending / failed runs, with the failures' last errors")
    s.add_argument("grid")
    s.add_argument("--runs-dir", default="runs")
    grid.set_defaults(func=_grid)
