"""Write a compute-matched grid: every algorithm of a template grid gets the same training wall-clock per run,
its stages split in its papers' proportions, at the seconds per step its stages take on this machine.

    python benchmarks/compute_matched.py benchmarks/grids/local-suite.yaml --seconds 600 \\
        --out benchmarks/grids/local-suite-compute-matched.yaml

Rules (printed as they apply):
- The papers' proportions are the plugin's default budgets (`offdiff algos NAME`): e.g. EDA 1M behaviour,
  1.5M critic, 200k alignment steps. Stage S is set by the budget key `S_steps`, else `steps`.
- Seconds are measured, not assumed: each algorithm entry trains twice on the grid's first dataset with the
  entry's overrides (one CPU thread, as the local profile runs), `--calibrate` and 3 x `--calibrate` steps per
  stage. Each stage's training seconds (DONE's compute, evaluations and diagnostics excluded) are fitted as
  fixed + per_step x steps through the two runs, so a stage's one-off set-up (EDA labels its states before
  aligning) is charged once, not per step. A stage's steps are then round(f x default), with f chosen so the
  stages' fitted training seconds add up to `--seconds`. A step's cost depends on the machine's load, so
  `--alongside K` starts K identical calibration runs side by side, as a grid running K jobs at once does
  (e.g. the local profile's array_limit: 2), and takes their mean; nothing else should run meanwhile.
- The grid's other keys (datasets, seeds, protocol; not its `budget`) are kept; the name gains `-compute-matched`.
  `--protocol KEY=VALUE` changes a protocol key, e.g. `eval_every=1000000` to evaluate only at the end of each
  stage: the template's evaluation interval, in steps, would give stages of different lengths different
  numbers of evaluations, and evaluations are not part of the matched training time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from offdiff.config import budget_fields
from offdiff.errors import OffdiffError
from offdiff.io import atomic_write_bytes
from offdiff.registry import get_algorithm


def stage_keys(algo: str, stages: list[str]) -> dict[str, str]:
    """The budget key of each stage: `<stage>_steps`, else `steps`."""
    budgets = budget_fields(get_algorithm(algo).Config)
    keys = {}
    for stage in stages:
        key = f"{stage}_steps" if f"{stage}_steps" in budgets else "steps"
        if key not in budgets:
            raise OffdiffError(f"{algo}: no budget key for stage {stage!r} (its budget keys: {', '.join(budgets)})")
        keys[stage] = key
    return keys


def _source(entry: Any) -> str:
    return entry["source"] if isinstance(entry, dict) else entry


class StageCost(NamedTuple):
    """A stage's training seconds at n steps: fixed_s + step_s * n."""

    fixed_s: float
    step_s: float


def timed_runs(algo: str, overrides: dict[str, Any], source: str, steps: int, root: Path,
               alongside: int) -> dict[str, float]:
    """Training seconds of each stage of a `steps`-steps-per-stage run of `algo` with `overrides` on `source`: the
    mean over `alongside` identical runs started side by side (the load of a grid running that many jobs)."""
    entry = "import sys; from offdiff.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "train", "--algo", algo, "--dataset", source, "--steps", str(steps),
               "--eval-episodes", "1", "--eval-every", str(10 * steps), "--device", "cpu", "--no-compile", "--quiet"]
    for key, value in overrides.items():
        if key not in budget_fields(get_algorithm(algo).Config):
            command += ["--set", f"{key}={value}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    copies = [root / str(i) for i in range(alongside)]
    processes = [subprocess.Popen([*command, "--runs-dir", str(c)], env=env, stdout=subprocess.DEVNULL) for c in copies]
    if any(code != 0 for code in [p.wait() for p in processes]):
        raise OffdiffError(f"a calibration run of {algo} failed (its error is above)")
    seconds: dict[str, list[float]] = {}
    for copy in copies:
        done = next((copy / "train" / algo).rglob("DONE"))
        summary = json.loads(done.read_text())
        for stage in json.loads((done.parent / "manifest.json").read_text())["stages"]:
            seconds.setdefault(stage["name"], []).append(summary["compute"]["stages"][stage["name"]]["train_s"])
    return {stage: sum(values) / len(values) for stage, values in seconds.items()}


def fit(short: dict[str, float], long: dict[str, float], steps: int, long_steps: int) -> dict[str, StageCost]:
    """Each stage's fixed and per-step seconds through its timings at `steps` and `long_steps` steps."""
    costs = {}
    for stage, seconds in short.items():
        step_s = (long[stage] - seconds) / (long_steps - steps)
        if step_s <= 0:
            raise OffdiffError(f"calibration of stage {stage!r} took {long[stage]:.2f} s for {long_steps} steps and "
                               f"{seconds:.2f} s for {steps}: too noisy to fit, raise --calibrate")
        costs[stage] = StageCost(fixed_s=max(0.0, seconds - step_s * steps), step_s=step_s)
    return costs


def calibrate(algo: str, overrides: dict[str, Any], source: str, steps: int, root: Path,
              alongside: int = 1) -> dict[str, StageCost]:
    """The cost of each stage of `algo`, fitted through runs of `steps` and 3 x `steps` steps per stage (each run
    `alongside` times side by side)."""
    short = timed_runs(algo, overrides, source, steps, root / "short", alongside)
    long = timed_runs(algo, overrides, source, 3 * steps, root / "long", alongside)
    return fit(short, long, steps, 3 * steps)


def matched(algo: str, costs: dict[str, StageCost], seconds: float) -> dict[str, int]:
    """Stage budgets in the plugin's default proportions whose fitted training seconds add up to `seconds`."""
    defaults = get_algorithm(algo).Config()
    keys = stage_keys(algo, list(costs))
    paper = {stage: getattr(defaults, keys[stage]) for stage in costs}
    fixed = sum(c.fixed_s for c in costs.values())
    if fixed >= seconds:
        raise OffdiffError(f"{algo}: its stages' fixed set-up alone takes {fixed:.1f} s, not less than --seconds "
                           f"{seconds:g}")
    fraction = (seconds - fixed) / sum(paper[s] * costs[s].step_s for s in costs)
    return {keys[s]: max(1, round(fraction * paper[s])) for s in costs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", type=Path, help="a grid whose algorithms, datasets and seeds to keep")
    parser.add_argument("--seconds", type=float, required=True, help="training wall-clock per run, seconds")
    parser.add_argument("--calibrate", type=int, default=100, help="steps per stage of each calibration run")
    parser.add_argument("--alongside", type=int, default=1,
                        help="calibrate with this many identical runs side by side: the grid's jobs at once (the "
                             "local profile's array_limit), so the rates are measured under the grid's load")
    parser.add_argument("--out", type=Path, required=True, help="the compute-matched grid to write")
    parser.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE",
                        help="set a protocol key of the written grid (repeatable)")
    args = parser.parse_args(argv)
    if args.alongside < 1:
        raise OffdiffError(f"--alongside takes a count of runs of at least 1, got {args.alongside}")
    grid = yaml.safe_load(args.template.read_text())
    for assignment in args.protocol:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise OffdiffError(f"--protocol takes KEY=VALUE, got {assignment!r}")
        grid["protocol"] = {**grid.get("protocol", {}), key: yaml.safe_load(value)}
    source = _source(grid["datasets"][0])
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, entry in enumerate(grid["algorithms"]):
            entry = {"name": entry, "algo": entry} if isinstance(entry, str) else dict(entry)
            overrides = dict(entry.get("overrides", {}))
            costs = calibrate(entry["algo"], overrides, source, args.calibrate, Path(tmp) / str(i), args.alongside)
            budgets = matched(entry["algo"], costs, args.seconds)
            print(f"{entry['name']}: " + ", ".join(f"{s} {c.fixed_s:.1f} s + {c.step_s * 1e3:.1f} ms/step"
                                                   for s, c in costs.items())
                  + " -> " + ", ".join(f"{k}={v}" for k, v in budgets.items()), file=sys.stderr)
            entry["overrides"] = {**overrides, **budgets}
            entries.append(entry)
    out = {k: v for k, v in grid.items() if k != "budget"}  # the grid-wide step budget gives way to each entry's
    out.update(name=f"{grid['name']}-compute-matched", algorithms=entries)
    header = (f"# Compute-matched version of {args.template.name}: {args.seconds:g} s of training per run, stages in\n"
              f"# the papers' proportions, costs fitted on {source}\n"
              f"# ({args.calibrate} and {3 * args.calibrate} steps per stage, 1 thread, "
              f"{args.alongside} side by side).\n"
              f"# Written by: python benchmarks/compute_matched.py {args.template} --seconds {args.seconds:g}"
              + "".join(f" --protocol {a}" for a in args.protocol)
              + (f" --alongside {args.alongside}" if args.alongside > 1 else "") + f" --out {args.out}\n")
    atomic_write_bytes(args.out, (header + yaml.safe_dump(out, sort_keys=False, width=120)).encode())
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except OffdiffError as exc:
        sys.exit(f"compute_matched: error: {exc}")
