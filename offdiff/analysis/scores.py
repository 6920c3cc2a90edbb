"""The tidy scores CSV (one row per evaluation) and the views every output is computed from.

The CSV is written with exact float text (`repr`) and stable row order, so it parses back to the same
numbers and a committed CSV regenerates every table and plot. Headline score of a run = its last
evaluation, counted only once the run is DONE; the best evaluation over training is a separate view
(online model selection, optimistic).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from offdiff.errors import OffdiffError

INTS = ("seed", "stage_index", "step", "total_step", "episodes")
FLOATS = ("normalized", "normalized_std", "return")
BOOLS = ("is_last", "done")
COLUMNS = ("algorithm", "algo", "dataset", "task", "seed", "stage", "stage_index", "step", "total_step",
           "normalized", "normalized_std", "return", "episodes", "is_last", "done", "config_hash", "run_dir",
           "ref_scores_source")
LEGACY_COLUMNS = COLUMNS[:-1]  # CSVs written before ref_scores_source: read with it empty
OPTIONAL = ("stage", "stage_index", "step", "total_step", "normalized", "normalized_std", "return", "episodes",
            "ref_scores_source")
RUN_KEY = ["algorithm", "dataset", "seed"]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _sort_key(row: dict[str, Any]) -> tuple:
    return (row["algorithm"], row["dataset"], row["seed"], row["run_dir"],
            -1 if row["stage_index"] is None else row["stage_index"], -1 if row["step"] is None else row["step"])


def to_csv_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """The CSV text of collected rows, sorted by algorithm, dataset, seed, run and evaluation."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=_sort_key):
        writer.writerow([_text(row[c]) for c in COLUMNS])
    return buffer.getvalue().encode()


def parse_cell(column: str, cell: str, where: str, ints: Collection[str], floats: Collection[str],
               bools: Collection[str]) -> Any:
    """A non-empty CSV cell as its column's type (int, finite float, true/false, else text); else one clear error."""
    try:
        if column in ints:
            return int(cell)
        if column in floats:
            value = float(cell)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        raise OffdiffError(f"{where}: {column}={cell!r} is not a finite number") from None
    if column in bools:
        if cell not in ("true", "false"):
            raise OffdiffError(f"{where}: {column}={cell!r} is not true/false")
        return cell == "true"
    return cell


def _parse(column: str, cell: str, where: str) -> Any:
    if cell == "":
        if column in OPTIONAL:
            return None
        raise OffdiffError(f"{where}: empty {column}")
    return parse_cell(column, cell, where, INTS, FLOATS, BOOLS)


def read_scores(path: Path) -> pd.DataFrame:
    """Parse and check a scores CSV; anything that is not one is a clear error naming the file and line."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise OffdiffError(f"cannot read scores CSV {path}: {exc}") from None
    try:
        header, *lines = list(csv.reader(io.StringIO(text))) or [[]]
    except csv.Error as exc:
        raise OffdiffError(f"{path} is not a readable CSV ({exc})") from None
    if header not in (list(COLUMNS), list(LEGACY_COLUMNS)):
        raise OffdiffError(f"{path} is not an offdiff scores CSV (expected the columns {','.join(COLUMNS)})")
    records = []
    for number, cells in enumerate(lines, start=2):
        where = f"{path} line {number}"
        if len(cells) != len(header):
            raise OffdiffError(f"{where}: {len(cells)} fields, expected {len(header)}")
        records.append({"ref_scores_source": None, **{c: _parse(c, v, where) for c, v in zip(header, cells,
                                                                                              strict=True)}})
    if not records:
        raise OffdiffError(f"{path} has no rows")
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    heads = frame[frame.is_last & frame.done]
    twice = heads[heads.duplicated(RUN_KEY, keep=False)]
    if not twice.empty:
        key = ", ".join(str(v) for v in twice.iloc[0][RUN_KEY])
        raise OffdiffError(f"{path}: several final evaluations for ({key}); one run per algorithm, dataset and seed")
    return frame


def final_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Headline: the last evaluation of each DONE run (columns algorithm, dataset, seed, score)."""
    heads = frame[frame.is_last & frame.done]
    return heads[RUN_KEY].assign(score=heads.normalized.astype(float)).sort_values(RUN_KEY, ignore_index=True)


def best_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Best evaluation over training of each DONE run: online model selection, optimistic."""
    evaluated = frame[frame.done & frame.normalized.notna()]
    best = evaluated.groupby(RUN_KEY, sort=True).normalized.max().astype(float)
    return best.rename("score").reset_index()


@dataclasses.dataclass(frozen=True)
class ScoreMatrices:
    """Per algorithm a (seeds x tasks) matrix of normalized scores (0-100) on the tasks every algorithm has."""

    tasks: list[str]
    seeds: dict[str, list[int]]
    scores: dict[str, np.ndarray]
    notes: list[str]


def score_matrices(final: pd.DataFrame, algorithms: Sequence[str] | None = None,
                   tasks: Sequence[str] | None = None) -> ScoreMatrices:
    """Rectangular matrices for rliable: the common tasks, and per algorithm the seeds done on all of them.
    `algorithms` and `tasks` give the order (default: sorted)."""
    algorithms = [a for a in algorithms or sorted(final.algorithm.unique()) if a in set(final.algorithm)]
    order = list(tasks or sorted(final.dataset.unique()))
    task_sets = [set(final[final.algorithm == a].dataset) for a in algorithms]
    common = set.intersection(*task_sets) if task_sets else set()
    tasks = [t for t in order if t in common]
    notes = []
    left_out = [t for t in order if t in set().union(*task_sets) - common]
    if left_out:
        notes.append(f"tasks left out of the aggregates (not done by every algorithm): {', '.join(left_out)}")
    seeds, scores = {}, {}
    for algorithm in algorithms:
        mine = final[(final.algorithm == algorithm) & final.dataset.isin(tasks)]
        table = mine.pivot(index="seed", columns="dataset", values="score").reindex(columns=tasks).dropna()
        if len(table) < mine.seed.nunique():
            notes.append(f"{algorithm}: seeds left out of the aggregates (not done on every task): "
                         f"{', '.join(map(str, sorted(set(mine.seed) - set(table.index))))}")
        if tasks and len(table):
            seeds[algorithm] = [int(s) for s in table.index]
            scores[algorithm] = table.to_numpy(dtype=float)
        elif tasks:
            notes.append(f"{algorithm}: left out of the aggregates (no seed done on every common task)")
    return ScoreMatrices(tasks, seeds, scores, notes)


def final_stage(frame: pd.DataFrame) -> pd.DataFrame:
    """The evaluations of each DONE run in the stage of its last evaluation (its main stage), with `offset`:
    the training steps of the stages before it (pretraining), so curves can start every algorithm at step 0."""
    evaluated = frame[frame.done & frame.normalized.notna()]
    main = evaluated[evaluated.is_last][[*RUN_KEY, "stage_index"]]
    rows = evaluated.merge(main, on=[*RUN_KEY, "stage_index"])
    return rows.assign(offset=rows.total_step - rows.step)


@dataclasses.dataclass(frozen=True)
class Curves:
    """Per algorithm, the main-stage steps every run of its score matrix was evaluated at, and the
    (seeds x tasks x steps) normalized scores there; `offsets` are its runs' pretraining steps."""

    steps: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    offsets: dict[str, tuple[int, ...]]
    notes: list[str]


def curves(frame: pd.DataFrame, matrices: ScoreMatrices) -> Curves:
    """Score-over-training arrays for the runs and tasks of `matrices` (the aggregates' runs)."""
    rows = final_stage(frame)
    steps, scores, offsets, notes = {}, {}, {}, []
    for algorithm, seeds in matrices.seeds.items():
        mine = rows[(rows.algorithm == algorithm) & rows.dataset.isin(matrices.tasks) & rows.seed.isin(seeds)]
        table = mine.pivot(index=["seed", "dataset"], columns="step", values="normalized")
        shared = table.dropna(axis=1)
        if shared.shape[1] < table.shape[1]:
            notes.append(f"{algorithm}: steps not evaluated in every run left out of the curve: "
                         f"{', '.join(map(str, sorted(set(table.columns) - set(shared.columns))))}")
        if shared.empty:
            continue
        index = pd.MultiIndex.from_product([seeds, matrices.tasks], names=["seed", "dataset"])
        steps[algorithm] = shared.columns.to_numpy(dtype=int)
        scores[algorithm] = shared.reindex(index).to_numpy(dtype=float).reshape(len(seeds), len(matrices.tasks), -1)
        offsets[algorithm] = tuple(sorted({int(o) for o in mine.offset}))
    return Curves(steps, scores, offsets, notes)
