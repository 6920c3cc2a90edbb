"""K packed runs in one job, trained at once (`concurrency: K`) or in turn: the job's wall-clock.

Each measurement runs `offdiff grid submit` on a fresh runs folder with a local profile whose one job holds K
runs (K seeds of one algorithm on a toy bandit; every run gets `--threads` torch threads), and times
- `job_s`: the job, from its submission to its result (submitit's files): what a cluster bills, with the
  start-up of the job's process and of every worker (each imports torch: seconds per run on a small CPU);
- `training_s`: from the first run's manifest (its data prepared, training about to start) to the last DONE;
- `command_s`: the whole command (Python's start, planning, the job).
Variants:
- `sequential`: `concurrency: 1`, `cpus: threads`: the runs one after another, as packing did before;
- `sequential-all-cpus`: `concurrency: 1`, `cpus: K × threads`: the same job size as `concurrent`;
- `concurrent`: `concurrency: K`, `cpus: K × threads`.
Rounds alternate the order of the variants (every other round reversed), so drift in the machine's load falls
on each; the figures are medians over rounds, and each speed-up (of `job_s`) is the median of the rounds' paired ratios.
Writes OUT/packing.json, OUT/packing.md and OUT/packing.png:

    python benchmarks/concurrency.py results/concurrency --k 2 --threads 1 --rounds 5
    python benchmarks/concurrency.py OUT --device cuda --k 1,2,4,8 --variants sequential,concurrent --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = ("sequential", "sequential-all-cpus", "concurrent")
SMALL = {"hidden": 32, "batch_size": 64, "eval_candidates": 8}  # --quick: checks that it runs


def _files(folder: Path, k: int, variant: str, args: argparse.Namespace) -> tuple[Path, Path]:
    """The grid (K seeds) and the local profile of one measurement."""
    overrides = SMALL if args.quick else {}
    grid = folder / "grid.yaml"
    grid.write_text(json.dumps({
        "name": "packing", "datasets": [args.dataset], "seeds": list(range(k)),
        "algorithms": [{"algo": args.algo, "overrides": overrides}],
        "budget": {"steps": args.steps},
        "protocol": {"eval_every": args.steps, "eval_episodes": 10, "eval_envs": 10,
                     "log_every": min(100, args.steps), "checkpoint_every": args.steps},
        "compile": False,
    }))  # JSON is YAML
    concurrent = variant == "concurrent"
    cpus = args.threads * (1 if variant == "sequential" else k)
    profile = folder / "profile.yaml"
    profile.write_text(json.dumps({
        "executor": "local", "gpus": int(args.device.startswith("cuda")), "cpus": cpus, "time_min": 120,
        "array_limit": 1, "runs_per_job": k, "concurrency": k if concurrent else 1, "device": args.device,
    }))
    return grid, profile


def measure(k: int, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One job of K runs in one variant, in a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="offdiff-packing-") as tmp:
        folder = Path(tmp)
        grid, profile = _files(folder, k, variant, args)
        runs = folder / "runs"
        command = [sys.executable, "-m", "offdiff.cli", "grid", "submit", str(grid), "--profile", str(profile),
                   "--runs-dir", str(runs)]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        command_s = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{shlex.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        run_dirs = sorted(runs.glob("packing/*/*/*/seed_*"))
        assert len(run_dirs) == k and all((r / "DONE").exists() for r in run_dirs), run_dirs
        first = min((r / "manifest.json").stat().st_mtime for r in run_dirs)
        last = max((r / "DONE").stat().st_mtime for r in run_dirs)
        [submitted] = runs.glob("packing/_harness/logs/*/*/*_submitted.pkl")
        [result] = submitted.parent.glob("*_result.pkl")
        job_s = result.stat().st_mtime - submitted.stat().st_mtime
    return {"k": k, "variant": variant, "job_s": round(job_s, 3), "training_s": round(last - first, 3),
            "command_s": round(command_s, 3), "load_average_before": round(load, 2)}


def _variants(k: int, wanted: list[str]) -> list[str]:
    return ["sequential"] if k == 1 else wanted


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per K and variant: medians and ranges over rounds, and the median paired ratio to `sequential`."""
    summary = []
    for k in sorted({r["k"] for r in rows}):
        by_round = {(r["variant"], r["round"]): r for r in rows if r["k"] == k}
        for variant in dict.fromkeys(r["variant"] for r in rows if r["k"] == k):
            mine = [r for r in rows if r["k"] == k and r["variant"] == variant]
            times = [r["job_s"] for r in mine]
            ratios = {base: [by_round[(base, r["round"])]["job_s"] / r["job_s"] for r in mine
                             if (base, r["round"]) in by_round]
                      for base in ("sequential", "sequential-all-cpus")}
            summary.append({
                "k": k, "variant": variant, "rounds": len(mine), "job_s_median": statistics.median(times),
                "job_s_range": [min(times), max(times)],
                "training_s_median": statistics.median(r["training_s"] for r in mine),
                "command_s_median": statistics.median(r["command_s"] for r in mine),
                **{f"speedup_over_{base}": statistics.median(v) if v else None for base, v in ratios.items()},
            })
    return summary


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    lines = [f"{s['algo']} on {s['dataset']}, {s['steps']} steps per run, {s['threads']} torch thread(s) per run, "
             f"device {s['device']}; {s['rounds']} round(s), medians (range)", "",
             "| K | variant | job cpus | job s | training s | command s | vs sequential | vs sequential-all-cpus |",
             "|---|---|---|---|---|---|---|---|"]
    for r in payload["summary"]:
        cpus = s["threads"] * (1 if r["variant"] == "sequential" else r["k"])
        low, high = r["job_s_range"]
        lines.append(f"| {r['k']} | {r['variant']} | {cpus} | {r['job_s_median']:.1f} ({low:.1f}–{high:.1f}) "
                     f"| {r['training_s_median']:.1f} | {r['command_s_median']:.1f} "
                     f"| {_x(r['speedup_over_sequential'])} | {_x(r['speedup_over_sequential-all-cpus'])} |")
    return "\n".join(lines) + "\n"


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = payload["summary"]
    ks = sorted({r["k"] for r in summary})
    variants = list(dict.fromkeys(r["variant"] for r in summary))
    fig, ax = plt.subplots(figsize=(5 + len(ks), 3.5))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        rows = {r["k"]: r for r in summary if r["variant"] == variant}
        xs = [j + i * width for j, k in enumerate(ks) if k in rows]
        medians = [rows[k]["job_s_median"] for k in ks if k in rows]
        errors = [[rows[k]["job_s_median"] - rows[k]["job_s_range"][0] for k in ks if k in rows],
                  [rows[k]["job_s_range"][1] - rows[k]["job_s_median"] for k in ks if k in rows]]
        ax.bar(xs, medians, width, yerr=errors, capsize=3, label=variant)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(ks))], [f"K = {k}" for k in ks])
    ax.set_ylabel("job wall-clock, s (median, range)")
    s = payload["settings"]
    ax.set_title(f"K packed {s['algo']} runs in one job, {s['device']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--k", default="2", help="runs per job, comma-separated (e.g. 1,2,4,8)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--algo", default="dql")
    p.add_argument("--dataset", default="toy:four_corners")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny networks: checks that it runs")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.k.split(",")]
    wanted = [v for v in args.variants.split(",") if v]
    if not set(wanted) <= set(VARIANTS) or "sequential" not in wanted:
        p.error(f"--variants: a comma-separated subset of {', '.join(VARIANTS)} that includes sequential")
    import torch

    from offdiff.bench.machine import describe_machine, load_average
    from offdiff.io import atomic_write_bytes, atomic_write_json

    settings = {key: getattr(args, key) for key in ("algo", "dataset", "steps", "threads", "device", "rounds",
                                                    "quick")}
    payload = {"command": shlex.join(["python", "benchmarks/concurrency.py", *argv]), "settings": settings,
               "machine": describe_machine(torch.device(args.device)), "measurements": []}
    for round_ in range(args.rounds):
        for k in ks:
            order = _variants(k, wanted)
            for variant in order if round_ % 2 == 0 else order[::-1]:
                row = {**measure(k, variant, args), "round": round_}
                print(f"[packing] round {round_ + 1}/{args.rounds} K={k} {variant}: job {row['job_s']:.1f} s, "
                      f"training {row['training_s']:.1f} s (load {row['load_average_before']})",
                      file=sys.stderr)
                payload["measurements"].append(row)
                payload.update(summary=summarize(payload["measurements"]), load_average_end=load_average())
                atomic_write_json(args.out / "packing.json", payload)  # after each: a partial run keeps its rows
                atomic_write_bytes(args.out / "packing.md", markdown(payload).encode())
    plot(payload, args.out / "packing.png")
    print(markdown(payload), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
