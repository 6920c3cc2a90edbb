"""`offdiff grid status` as a table (per algorithm entry × dataset), as JSON, or refreshed (`--watch`), and
`offdiff grid cancel`.

A run's progress comes from its own folder: the stages' lengths from the manifest, the last logged step and
steps/s from metrics.jsonl, the last evaluation from evals.jsonl. The ETA of a running run is its remaining
steps at its last logged speed (evaluations not counted); a row's ETA is its slowest running run's.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from offdiff.harness.executors import by_executor
from offdiff.harness.record import Record
from offdiff.harness.status import ORDER, RunStatus, counts
from offdiff.progress import eta
from offdiff.records import Metrics

COLUMNS = ("done", "running", "pending", "failed", "not submitted")


@dataclasses.dataclass(frozen=True)
class RunProgress:
    step: int | None = None  # global step (stages one after another)
    total: int | None = None
    steps_per_s: float | None = None
    score: float | None = None  # normalized score of the last evaluation
    score_std: float | None = None

    @property
    def fraction(self) -> float | None:
        return self.step / self.total if self.step is not None and self.total else None

    @property
    def eta_s(self) -> float | None:
        if self.step is None or not self.total or not self.steps_per_s:
            return None
        return (self.total - self.step) / self.steps_per_s


def run_progress(status: RunStatus) -> RunProgress:
    run = status.cell.planned.run_dir
    if not run.manifest.exists():
        return RunProgress()
    manifest = run.read_manifest()
    steps, offset = manifest.stage_steps, manifest.stage_offsets
    logged = [r for r in run.metric_rows() if isinstance(r, Metrics)]
    evals = run.evaluations()
    last = evals[-1].scores if evals else None
    step = offset[logged[-1].stage_index] + logged[-1].step if logged else 0
    return RunProgress(
        step=sum(steps) if status.state == "done" else step, total=sum(steps),
        steps_per_s=logged[-1].steps_per_s if logged else None,
        score=last.normalized_mean if last else None, score_std=last.normalized_std if last else None,
    )


def _names(status: RunStatus) -> tuple[str, str, int]:
    """(algorithm entry label, dataset source, seed) of a run."""
    request = status.cell.planned.request
    suffix = f" {request.source} seed={request.seed}"
    label = status.cell.label
    return (label[: -len(suffix)] if label.endswith(suffix) else label), request.source, request.seed


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def overview(statuses: Sequence[RunStatus]) -> dict[str, Any]:
    """Every run with its state and progress, and one row per (algorithm entry, dataset)."""
    runs, groups = [], {}
    for status in statuses:
        algo, dataset, seed = _names(status)
        progress = run_progress(status)
        state = status.state if status.state in COLUMNS else "not submitted"
        runs.append({"key": status.cell.key, "algorithm": algo, "dataset": dataset, "seed": seed,
                     "state": status.state, "job": status.job, "detail": status.detail,
                     **dataclasses.asdict(progress), "eta_s": progress.eta_s})
        row = groups.setdefault((algo, dataset), {"algorithm": algo, "dataset": dataset, **dict.fromkeys(COLUMNS, 0),
                                                  "_running": [], "_scores": []})
        row[state] += 1
        if status.state == "running":
            row["_running"].append(progress)
        if status.state in ("done", "running"):
            row["_scores"].append(progress.score)
    table = []
    for row in groups.values():
        running, scores = row.pop("_running"), row.pop("_scores")
        etas = [p.eta_s for p in running if p.eta_s is not None]
        table.append({**row, "progress": _mean([p.fraction for p in running]), "score": _mean(scores),
                      "eta_s": max(etas) if etas else None})
    tally = {state: sum(s.state == state for s in statuses) for state in ORDER}
    etas = [r["eta_s"] for r in table if r["eta_s"] is not None]
    return {"counts": tally, "eta_s": max(etas) if etas else None, "table": table, "runs": runs}


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "percent":
        return f"{100 * value:.0f}%"
    if kind == "score":
        return f"{value:.1f}"
    if kind == "eta":
        return eta(value, 1.0)
    return str(value)


def render(grid_root: Path, statuses: Sequence[RunStatus], view: dict[str, Any]) -> list[str]:
    """The status table: one row per algorithm entry × dataset; then the failed runs with their last errors."""
    header = ["algorithm", "dataset", *COLUMNS, "progress", "score", "ETA"]
    kinds = ["", "", *[""] * len(COLUMNS), "percent", "score", "eta"]
    keys = ["algorithm", "dataset", *COLUMNS, "progress", "score", "eta_s"]
    rows = [header] + [[_cell(r[k], kind) for k, kind in zip(keys, kinds, strict=True)] for r in view["table"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{grid_root}: {len(statuses)} runs: {counts(statuses)}"]
    lines += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]
    lines.append("progress: mean over running runs; score: mean normalized score of the last evaluation of done and "
                 "running runs; ETA: slowest running run, at its last logged steps/s")
    if view["eta_s"] is not None:
        waiting = view["counts"]["pending"] + view["counts"]["not submitted"]
        lines.append(f"the running runs end in about {eta(view['eta_s'], 1.0)}"
                     + (f"; {waiting} pending or unsubmitted run(s) not estimated" if waiting else ""))
    for s in statuses:
        if s.state in ("failed", "unknown"):
            lines.append(f"{s.state}: {s.cell.label} (job {s.job}) {s.cell.key}")
            lines += [f"    {line}" for line in s.detail.splitlines()]
    return lines


def watch(poll: Callable[[], list[RunStatus]], grid_root: Path, every_s: float) -> int:
    """Print the table every `every_s` seconds until no run is running or pending (Ctrl-C stops watching only)."""
    try:
        while True:
            statuses = poll()
            if sys.stdout.isatty():
                print("\033[2J\033[H", end="")
            print("\n".join(render(grid_root, statuses, overview(statuses))))
            print(f"(every {every_s:g} s; Ctrl-C stops watching, not the grid)", flush=True)
            if not any(s.state in ("running", "pending") for s in statuses):
                return 0
            time.sleep(every_s)
    except KeyboardInterrupt:
        return 0


def cancel(statuses: Sequence[RunStatus], folder: Path) -> list[str]:
    """Cancel the jobs that hold the grid's running and pending runs, each through the executor that submitted it
    (SLURM: scancel; this machine: stop the `grid submit` that is starting local jobs, then its running jobs).
    A cancelled run keeps its last checkpoint and resumes from it when submitted again."""
    wanted = {s.job for s in statuses if s.state in ("running", "pending") and s.job}
    record = Record(folder)
    jobs = [(sub, j.id) for sub in record.submissions for j in sub.jobs if j.id in wanted]
    return [job_id for backend, mine in by_executor(jobs, str(record.path)) for job_id in backend.cancel(mine)]
