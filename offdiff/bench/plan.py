"""`offdiff bench plan`: start-up and planning time, each in a fresh interpreter, against a bare `import torch`.

Three commands, each run `--repeats` times in a new process (the median is reported): `python -c "import
torch"` for scale, `offdiff --help` (which imports neither torch nor a plugin), and `offdiff grid submit GRID
--dry-run --quiet` on a generated grid of about 1,000 runs (every toy dataset × every registered algorithm ×
seeds; nothing is written but the grid and profile files in a temporary folder). Figures and ratios only: a
machine's load moves them all, so nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PLAN_GOAL_S = 3.0  # issue 20: a 1,000-run plan (`grid submit --dry-run`) within 3 s


def write_grid(folder: Path, runs: int) -> tuple[Path, Path, int]:
    """A grid of about `runs` runs (every toy dataset × every registered algorithm × seeds), a local profile, and
    the grid's number of runs."""
    from offdiff.data.toy import TOY_TASKS
    from offdiff.registry import plugins

    datasets, algos = [f"toy:{name}" for name in TOY_TASKS], list(plugins())
    seeds = math.ceil(runs / (len(datasets) * len(algos)))
    grid, profile = folder / "plan.yaml", folder / "profile.yaml"
    grid.write_text(json.dumps({"name": "plan", "datasets": datasets, "seeds": list(range(seeds)),
                                "algorithms": algos, "budget": {"steps": 1000}}))  # JSON is YAML
    profile.write_text("executor: local\n")
    return grid, profile, len(datasets) * len(algos) * seeds


def _median_s(argv: list[str], repeats: int) -> float:
    """The median wall time of `argv` in a new process (its output discarded; a failure is an error)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_plan_bench(runs: int, repeats: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """The three figures (seconds), their ratios to a bare `import torch`, and the planned grid's size."""
    python = [sys.executable, "-m", "offdiff.cli"]
    with tempfile.TemporaryDirectory(prefix="offdiff-bench-plan-") as tmp:
        grid, profile, size = write_grid(Path(tmp), runs)
        commands = {
            "import torch": [sys.executable, "-c", "import torch"],
            "offdiff --help": [*python, "--help"],
            f"grid submit --dry-run ({size} runs)": [*python, "grid", "submit", str(grid), "--profile", str(profile),
                                                     "--runs-dir", str(Path(tmp) / "runs"), "--dry-run", "--quiet"],
        }
        figures = {}
        for label, argv in commands.items():
            progress(f"{label}: {repeats} fresh interpreter(s)")
            figures[label] = _median_s(argv, repeats)
    torch_s = figures["import torch"]
    return {"runs": size, "repeats": repeats, "plan_goal_s": PLAN_GOAL_S,
            "results": [{"command": label, "seconds": round(s, 3), "ratio_to_import_torch": round(s / torch_s, 3)}
                        for label, s in figures.items()]}


def table(payload: dict[str, Any]) -> str:
    lines = ["| command | seconds (median) | × bare import torch |", "|---|---:|---:|"]
    lines += [f"| {r['command']} | {r['seconds']:.2f} | {r['ratio_to_import_torch']:.2f} |" for r in payload["results"]]
    lines.append(f"\nmedian of {payload['repeats']} fresh interpreters each; the goal for the plan is "
                 f"{payload['plan_goal_s']:g} s on an unloaded machine (load average: {payload['load_average']})")
    return "\n".join(lines) + "\n"


def _plan(args: argparse.Namespace) -> int:
    from offdiff.bench.machine import describe_machine, load_average
    from offdiff.errors import OffdiffError

    if args.runs < 1 or args.repeats < 1:
        raise OffdiffError(f"--runs and --repeats must be >= 1, got {args.runs} and {args.repeats}")
    payload = run_plan_bench(args.runs, args.repeats, lambda what: print(f"[bench] {what}", file=sys.stderr))
    payload["load_average"] = load_average()
    print(table(payload), end="")
    if args.out is not None:
        import torch

        from offdiff.io import atomic_write_json

        atomic_write_json(args.out, {"command": f"offdiff bench plan --runs {args.runs} --repeats {args.repeats}",
                                     "machine": describe_machine(torch.device("cpu")), **payload})
        print(f"wrote {args.out}")
    return 0


EPILOG = """examples:
  offdiff bench plan                                    # a ~1,000-run plan, --help and import torch, 3 times each
  offdiff bench plan --repeats 5 --out plan.json        # and the figures with the machine as JSON
"""


def register(bench_commands: argparse._SubParsersAction) -> None:
    """Add `plan` to the `offdiff bench` subcommands."""
    p = bench_commands.add_parser("plan", help="start-up (`offdiff --help`) and 1,000-run planning time against a "
                                               "bare `import torch`", description=__doc__.splitlines()[0],
                                epilog=EPILOG)
    p.add_argument("--runs", type=int, default=1000, help="about this many runs in the planned grid")
    p.add_argument("--repeats", type=int, default=3, help="fresh interpreters per command (the median is reported)")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    p.set_defaults(func=_plan)
