"""`offdiff grid submit | status | resubmit | cancel`: the harness's subcommands, registered into `offdiff`'s parser."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from offdiff.harness.executors import names as executor_names

RUNS_DIR = "the folder holding runs/<grid>/ (the same for submit, status and cancel)"


def _grid(args: argparse.Namespace) -> int:
    from offdiff.harness.grid import load_grid
    from offdiff.harness.profile import load_profile
    from offdiff.harness.submit import submit

    grid = load_grid(Path(args.grid))
    if getattr(args, "keep", None):
        grid = dataclasses.replace(grid, keep=args.keep)
    runs_root = Path(args.runs_dir).resolve()
    if args.grid_command in ("status", "cancel"):
        return _status(args, grid, runs_root)
    profile = dataclasses.replace(load_profile(Path(args.profile), executor=args.executor), **grid.resources)
    return submit(grid, profile, runs_root, only_failed=args.grid_command == "resubmit", dry_run=args.dry_run,
                  quiet=args.quiet)


def _status(args: argparse.Namespace, grid: Any, runs_root: Path) -> int:
    from offdiff.harness.grid import expand
    from offdiff.harness.overview import cancel, overview, render, watch
    from offdiff.harness.record import harness_dir
    from offdiff.harness.status import run_states

    folder = harness_dir(runs_root, grid.name)
    cells = expand(grid, runs_root)
    if args.grid_command == "cancel":
        jobs: list[str] = []
        for _ in range(3):  # again while a stopping local `grid submit` may have started one more job
            new = [j for j in cancel(run_states(cells, folder), folder) if j not in jobs]
            if not new:
                break
            jobs += new
            time.sleep(2.0)
        print(f"cancelled {len(jobs)} job(s){': ' + ', '.join(jobs) if jobs else ''}; "
              f"the runs keep their checkpoints and resume when submitted again")
        return 0
    if args.watch is not None:
        return watch(lambda: run_states(cells, folder), folder.parent, args.watch)
    statuses = run_states(cells, folder)
    view = overview(statuses)
    if args.json:
        print(json.dumps({"grid": grid.name, "runs_root": str(runs_root), **view}, indent=2))
    else:
        print("\n".join(render(folder.parent, statuses, view)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `offdiff grid ...` to the top-level parser's subcommands."""
    grid = subparsers.add_parser("grid", help="benchmark grids: submit (local or SLURM), status, resubmit failures")
    commands = grid.add_subparsers(dest="grid_command", required=True)
    for name, text in (("submit", "submit every run that is not done and not queued"),
                       ("resubmit", "submit the failed runs again (never touches finished ones)")):
        p = commands.add_parser(name, help=text)
        p.add_argument("grid", help="grid spec, e.g. benchmarks/grids/quickstart.yaml")
        p.add_argument("--profile", required=True, help="cluster profile, e.g. slurm/profiles/local.yaml")
        p.add_argument("--executor", choices=executor_names(), help="overrides the profile's executor")
        p.add_argument("--dry-run", action="store_true", help="print the plan (runs, jobs, arrays, GPU-hours) only")
        p.add_argument("--quiet", action="store_true", help="leave out the list of runs that --dry-run prints")
        p.add_argument("--runs-dir", default="runs", help=RUNS_DIR)
        p.add_argument("--keep", choices=("all", "final"),
                       help="final: finished runs keep only their final weights (weights.pt; default: the grid's "
                            "`keep:`, else all)")
    s = commands.add_parser("status", help="a table per algorithm × dataset: done / running / pending / failed, "
                                           "progress, last score, ETA; the failures' last errors")
    s.add_argument("grid", help="grid spec, e.g. benchmarks/grids/quickstart.yaml")
    s.add_argument("--runs-dir", default="runs", help=RUNS_DIR)
    s.add_argument("--json", action="store_true", help="every run's state, job, progress, steps/s, ETA and last score "
                                                      "as JSON, and the table's rows")
    s.add_argument("--watch", nargs="?", type=float, const=30.0, metavar="SECONDS",
                   help="print the table again every SECONDS (default 30) until no run is running or pending")
    c = commands.add_parser("cancel", help="cancel the jobs of the grid's running and pending runs (checkpoints kept)")
    c.add_argument("grid", help="grid spec, e.g. benchmarks/grids/quickstart.yaml")
    c.add_argument("--runs-dir", default="runs", help=RUNS_DIR)
    grid.set_defaults(func=_grid)
