"""Stage diagnostics of a collection: `diagnostics.csv` from the run folders, `diagnostics.md` from that CSV.

`collect_rows` reads, for every run of the scores CSV, its `diagnostics.jsonl` (offdiff/records.py:
diagnostic policies evaluated after their stage, Q calibrations), its dataset's average episode return (the
manifest's `data_returns`) and its compute per stage (DONE's `compute`: device- and training-seconds): one tidy
row each, of kind `policy`, `q_calibration`, `data` or `compute`, and one row of kind `report` per value a plugin
reported after a stage (`metric`, `value`). Runs older than the diagnostics have none of these; a collection
without any writes no `diagnostics.csv`, so older results regenerate unchanged. `--from-csv DIR/scores.csv`
reads `DIR/diagnostics.csv` when it is there, and `table` derives `diagnostics.md` from it and the scores.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from offdiff.analysis.collect import score_columns
from offdiff.analysis.layout import Presentation
from offdiff.analysis.scores import _text, parse_cell
from offdiff.analysis.tables import md_escape
from offdiff.errors import OffdiffError
from offdiff.records import BadRun, Done, PolicyDiagnostic, RunDir, StageReport, load_json

RUN = ("algorithm", "algo", "dataset", "task", "seed", "done", "run_dir")
COLUMNS = (*RUN, "kind", "stage", "stage_index", "step", "policy", "normalized", "normalized_std", "return",
           "episodes", "transitions", "discount", "mean_q", "mean_return", "correlation", "terminal_fraction",
           "device", "device_s", "cached", "cached_device_s", "actions_per_s", "metric", "value", "train_s",
           "cached_train_s")
INTS = ("seed", "stage_index", "step", "episodes", "transitions")
FLOATS = ("normalized", "normalized_std", "return", "discount", "mean_q", "mean_return", "correlation",
          "terminal_fraction", "device_s", "cached_device_s", "actions_per_s", "value", "train_s", "cached_train_s")
REQUIRED = (*RUN, "kind")
# the last columns, newest first: absent from older CSVs
ADDED = (("train_s", "cached_train_s"), ("metric", "value"), ("actions_per_s",))
HEADERS = [list(COLUMNS[:len(COLUMNS) - sum(len(group) for group in ADDED[:n])]) for n in range(len(ADDED) + 1)]
KINDS = ("policy", "q_calibration", "data", "compute", "report")


def run_rows(path: Path, base: dict[str, Any]) -> list[dict[str, Any]]:
    """The diagnostics rows of one run folder (`base`: its RUN columns)."""
    run, rows = RunDir(path), []
    for r in run.diagnostic_rows(strict=True):
        common = {**base, "kind": r.KIND, "stage": r.stage, "stage_index": r.stage_index, "step": r.step}
        if isinstance(r, PolicyDiagnostic):
            rows.append({**common, "policy": r.policy, **score_columns(r.scores)})
        elif isinstance(r, StageReport):
            rows += [{**common, "metric": key, "value": value} for key, value in r.values.items()]
        else:
            rows.append({**common, **{k: getattr(r, k) for k in ("transitions", "discount", "mean_q", "mean_return",
                                                                  "correlation", "terminal_fraction")}})
    manifest = run.read_manifest() if run.manifest.exists() else None
    data = manifest.data_average if manifest else None
    if data is not None:
        rows.append({**base, "kind": "data", "normalized": data.normalized_mean, "return": data.mean_return,
                     "episodes": data.episodes})
    compute = Done.from_json(load_json(run.done_marker), str(run.done_marker)).compute if run.is_done() else None
    if compute is not None:
        order = [s.get("name") for s in manifest.stages if isinstance(s, dict)] if manifest else []
        for stage, entry in sorted(compute.get("stages", {}).items(), key=lambda item: order.index(item[0])
                                   if item[0] in order else len(order)):
            rows.append({**base, "kind": "compute", "stage": stage,
                         "stage_index": order.index(stage) if stage in order else None,
                         "device": compute.get("device"), "device_s": entry.get("device_s"),
                         "cached": bool(entry.get("cached", False)), "cached_device_s": entry.get("producer_device_s"),
                         "actions_per_s": entry.get("eval_actions_per_s"), "train_s": entry.get("train_s"),
                         "cached_train_s": entry.get("producer_train_s")})
    return rows


def collect_rows(score_rows: Iterable[dict[str, Any]],
                 skip_bad: bool = False) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The diagnostics rows of every run in the scores rows (by `run_dir`, sorted), and the runs whose diagnostics
    were skipped (with `skip_bad`; else a damaged file raises `BadRun`)."""
    runs: dict[str, dict[str, Any]] = {}
    for row in score_rows:
        runs.setdefault(row["run_dir"], {k: row[k] for k in RUN})
    rows, skipped = [], []
    for run_dir, base in sorted(runs.items()):
        try:
            rows += run_rows(Path(run_dir), base)
        except BadRun as exc:
            if not skip_bad:
                raise
            skipped.append((run_dir, f"diagnostics left out: {exc}"))
    return rows, skipped


def to_csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_text(row.get(c)) for c in COLUMNS])
    return buffer.getvalue().encode()


def _parse(column: str, cell: str, where: str) -> Any:
    if cell == "":
        if column in REQUIRED:
            raise OffdiffError(f"{where}: empty {column}")
        return None
    if column == "kind" and cell not in KINDS:
        raise OffdiffError(f"{where}: kind={cell!r} is not one of {', '.join(KINDS)}")
    return parse_cell(column, cell, where, INTS, FLOATS, ("done", "cached"))


def parse_csv(data: bytes, name: str) -> pd.DataFrame:
    """Parse a diagnostics CSV's bytes; anything that is not one is a clear error naming `name` and the line."""
    try:
        header, *lines = list(csv.reader(io.StringIO(data.decode()))) or [[]]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise OffdiffError(f"cannot read diagnostics CSV {name}: {exc}") from None
    if header not in HEADERS:
        raise OffdiffError(f"{name} is not an offdiff diagnostics CSV (expected the columns {','.join(COLUMNS)})")
    records = []
    for number, cells in enumerate(lines, start=2):
        if len(cells) != len(header):
            raise OffdiffError(f"{name} line {number}: {len(cells)} fields, expected {len(header)}")
        records.append({c: _parse(c, v, f"{name} line {number}") for c, v in zip(header, cells, strict=True)})
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def _spread(values: list[float], digits: int = 1) -> str:
    if not values:
        return "—"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def mean_and_range(values: Sequence[float | None], digits: int) -> str:
    """'mean (min–max)', the value alone for one, — for none or when one is unknown."""
    if not values or None in values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _mean(values: list[float | None], digits: int) -> str:
    known = [v for v in values if v is not None and not pd.isna(v)]
    return f"{np.mean(known):.{digits}f}" if known else "—"


def _with_cached(rows: pd.DataFrame, own: str, producers: str) -> float | None:
    cached = rows.cached.map(lambda value: value is True)
    if rows.empty or rows[own].isna().any() or rows[producers][cached].isna().any():
        return None
    return float(rows[own].sum() + rows[producers][cached].sum())


def run_device_s(rows: pd.DataFrame) -> float | None:
    """This run's device-seconds plus those of the producers of its cached stages (None: one is unknown)."""
    return _with_cached(rows, "device_s", "cached_device_s")


def run_train_s(rows: pd.DataFrame) -> float | None:
    """This run's training seconds (evaluations and diagnostics excluded) plus those of the producers of its
    cached stages (None: one is unknown)."""
    return _with_cached(rows, "train_s", "cached_train_s")


def table(frame: pd.DataFrame, diagnostics: pd.DataFrame, present: Presentation) -> str:
    """diagnostics.md: per task and algorithm, over finished runs, the final score beside each diagnostic
    policy's score and the gain over it, the data's average return, the last Q calibration and the compute."""
    heads = frame[frame.is_last & frame.done].set_index("run_dir").normalized
    done = diagnostics[diagnostics.run_dir.isin(heads.index)]
    header = ["task", "algorithm", "seeds", "final", "diagnostic policy", "its score", "gain", "data average",
              "mean Q", "mean return-to-go", "corr(Q, return)", "device-s", "training-s"]
    lines = ["| " + " | ".join(header) + " |", "|:---|:---|" + "---:|" * 2 + ":---|" + "---:|" * 8]
    for dataset, task in present.tasks.items():
        for label, name in present.algorithms.items():
            cell = frame[(frame.dataset == dataset) & (frame.algorithm == label)]
            runs = sorted(set(cell.run_dir) & set(heads.index))
            if not runs:
                continue
            mine = done[done.run_dir.isin(runs)]
            final = [float(heads[r]) for r in runs]
            data = mine[mine.kind == "data"].normalized.tolist()
            calibration = mine[mine.kind == "q_calibration"].sort_values("stage_index").groupby("run_dir").last()
            ledgers = [mine[(mine.kind == "compute") & (mine.run_dir == r)] for r in runs]
            compute, training = [run_device_s(r) for r in ledgers], [run_train_s(r) for r in ledgers]
            tail = [_mean(data, 1), _mean(calibration.mean_q.tolist(), 2), _mean(calibration.mean_return.tolist(), 2),
                    _mean(calibration.correlation.tolist(), 2), _mean(compute if None not in compute else [], 0),
                    mean_and_range(training, 0)]
            policies = mine[mine.kind == "policy"].sort_values("stage_index").groupby(["policy", "run_dir"]).last()
            names = sorted(policies.index.get_level_values("policy").unique()) or [None]
            for policy in names:
                if policy is None:
                    middle = ["—", "—", "—"]
                else:
                    scores = policies.loc[policy].normalized
                    gains = [float(heads[r]) - float(scores[r]) for r in scores.index]
                    middle = [md_escape(policy), _spread(scores.tolist()), _spread(gains)]
                cells = [md_escape(task), md_escape(name), str(len(runs)), _spread(final), *middle, *tail]
                lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "Stage diagnostics of the finished runs (DONE), mean ± std over seeds; scores are normalized (0-100).",
        "final: the headline score (last evaluation). diagnostic policy: a policy a stage declares, evaluated once "
        "after that stage on the run's evaluation episodes (EDA: one sample of the behaviour model per state; "
        "DTQL: one sample of the pretrained diffusion model); gain: final minus its score, per run (EDA's "
        "alignment gain).",
        "data average: the dataset's average episode return, normalized like the scores.",
        "mean Q, mean return-to-go, corr(Q, return): the critic's Q on the dataset's own actions against their "
        "discounted returns-to-go in the training rewards' units, on a fixed random subset of transitions, after "
        "the last stage that trains the critic. A truncated episode's return-to-go misses the rewards after the "
        "cut: a lower bound where rewards are non-negative.",
        "device-s: seconds on the run's device (training, evaluations, diagnostics), plus what the runs that "
        "produced its cached stages spent on them. training-s: the training part of those seconds alone, mean "
        "(min–max) over seeds: what a compute-matched comparison matches (— for runs older than its record).",
    ]
    reports = report_table(frame, done, present)
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n" + (f"\n{reports}" if reports else "")


def report_table(frame: pd.DataFrame, done: pd.DataFrame, present: Presentation) -> str:
    """The values plugins reported after their stages (kind `report`): mean [min, max] over the finished runs,
    per task, algorithm, stage and metric; empty when no run reported any."""
    reports = done[done.kind == "report"]
    if reports.empty:
        return ""
    lines = ["## Stage reports", "", "| task | algorithm | stage | metric | runs | mean | min | max |",
             "|:---|:---|:---|:---|---:|---:|---:|---:|"]
    for dataset, task in present.tasks.items():
        for label, name in present.algorithms.items():
            runs = set(frame[(frame.dataset == dataset) & (frame.algorithm == label)].run_dir)
            mine = reports[reports.run_dir.isin(runs)].sort_values("stage_index", kind="stable")
            for (stage, metric), group in mine.groupby(["stage", "metric"], sort=False):
                values = group.value.astype(float)
                cells = [md_escape(task), md_escape(name), md_escape(stage), md_escape(metric), str(len(values)),
                         f"{values.mean():.3g}", f"{values.min():.3g}", f"{values.max():.3g}"]
                lines.append("| " + " | ".join(cells) + " |")
    note = ("Values a plugin measures after a stage (`Algorithm.stage_report`; its README says what each means). "
            "EDA, after `behavior`: `support_margin`, the mean nats by which its behaviour energy at the smallest "
            "diffusion time puts the dataset's action above a uniform action in the box, and "
            "`share_data_preferred`, how often it does; after `align`: `outside_box`, the share of the aligned "
            "policy's sampled action coordinates outside [-1, 1] before acting clips them, and "
            "`behavior_outside_box`, the same share for the behaviour model.")
    return "\n".join(lines) + "\n\n" + note + "\n"
