"""Run folders -> scores CSV rows: one row per evaluation, labelled so that every config is its own algorithm.

A run folder is what `offdiff.train.runner` writes (offdiff/records.py): `manifest.json`, `evals.jsonl` and,
once finished, `DONE`. Files are read strictly: a half-written or corrupt file is a `BadRun` naming the file, never a
silently dropped row. An algorithm that appears with several configs on one dataset (an EDA beta sweep)
gets a label per config: its name plus the config keys that differ, e.g. `eda[beta=0.1]`.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from offdiff.errors import OffdiffError
from offdiff.records import BadRun, Done, Evaluation, RunDir, Scores, load_json

RUN_FILES = ("manifest.json", "evals.jsonl", "DONE")
NO_EVALUATION = dict.fromkeys(
    ("stage", "stage_index", "step", "total_step", "normalized", "normalized_std", "return", "episodes")
)


@dataclasses.dataclass(frozen=True)
class Run:
    path: Path
    algo: str
    dataset: str
    task: str
    ref_source: str | None  # where the reference scores of the normalization came from (None: not recorded)
    seed: int
    identity: dict[str, str]  # config and protocol values (as JSON text): what tells two configs apart
    stage_offsets: tuple[int, ...]  # training steps before each stage
    evals: tuple[Evaluation, ...]
    done: bool
    data_sha256: str | None = None  # the content digest of its data (None: a run older than the digest)


@dataclasses.dataclass(frozen=True)
class Collection:
    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]]  # (run folder, reason)
    data_sha256: dict[str, str] = dataclasses.field(default_factory=dict)  # dataset -> its content digest, where known


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Every folder under `paths` holding a run file (shared stage caches excluded), sorted, without repeats."""
    found: dict[Path, Path] = {}
    for root in map(Path, paths):
        if not root.is_dir():
            raise OffdiffError(f"{root} is not a directory of run folders")
        for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
            if "_cache" not in folder.relative_to(root).parts and any((folder / f).exists() for f in RUN_FILES):
                found.setdefault(folder.resolve(), folder)
    if not found:
        raise OffdiffError(f"no run folders ({', '.join(RUN_FILES)}) under {', '.join(map(str, paths))}")
    return sorted(found.values(), key=lambda p: p.as_posix())


def score_columns(scores: Scores) -> dict[str, Any]:
    """An evaluation's scores as CSV columns (of scores.csv, and of diagnostics.csv's policy rows)."""
    return {"normalized": scores.normalized_mean, "normalized_std": scores.normalized_std,
            "return": scores.mean_return, "episodes": scores.episodes}


def _evaluations(run: RunDir, n_stages: int) -> tuple[Evaluation, ...]:
    rows = run.evaluations(strict=True)
    for number, row in enumerate(rows, start=1):
        where = f"{run.evals} line {number}"
        if not row.scores.returns or not 0 <= row.stage_index < n_stages:
            raise BadRun(f"{where}: no episode returns or a stage_index the manifest does not have")
        if number > 1 and (row.stage_index, row.step) <= (rows[number - 2].stage_index, rows[number - 2].step):
            raise BadRun(f"{where}: evaluations out of order or repeated")
    return tuple(rows)


def read_run(path: Path) -> Run:
    """One run folder, validated; a missing or damaged file is a `BadRun` naming it."""
    folder = RunDir(path)
    manifest = folder.read_manifest()
    evals = _evaluations(folder, len(manifest.stages))
    done = folder.is_done()
    if done:
        final = Done.from_json(load_json(folder.done_marker), str(folder.done_marker)).final_normalized_score
        if final is not None and (not evals or evals[-1].scores.normalized_mean != final):
            raise BadRun(f"{folder.evals} does not end with the final evaluation that DONE reports")
    identity = {k: json.dumps(v, sort_keys=True) if not isinstance(v, str) else v for k, v in
                {**manifest.config, **{f"protocol.{k}": v for k, v in manifest.protocol.items()}}.items()}
    return Run(
        path=path, algo=manifest.algorithm, dataset=manifest.dataset["dataset_id"], task=manifest.dataset["task"],
        ref_source=manifest.ref_source, seed=manifest.seed, identity=identity,
        stage_offsets=manifest.stage_offsets, evals=evals, done=done,
        data_sha256=manifest.dataset.get("content_sha256"),
    )


def check_one_data_per_dataset(runs: Sequence[Run]) -> None:
    """Runs that name one dataset were trained on the same data (where they recorded its digest); else an error
    naming each version: a table would silently average over two datasets of one name."""
    versions: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.data_sha256 is not None:
            versions[run.dataset][run.data_sha256].append(run.path)
    for dataset, by_digest in sorted(versions.items()):
        if len(by_digest) > 1:
            listed = "; ".join(f"{digest[:12]}...: {len(paths)} run(s), e.g. {paths[0]}"
                               for digest, paths in sorted(by_digest.items()))
            raise OffdiffError(f"the runs of {dataset} were trained on {len(by_digest)} different datasets under that "
                               f"name (content sha256 {listed}); aggregate each set on its own")


def labels(runs: Sequence[Run]) -> dict[Path, str]:
    """Display labels: the algorithm name, plus the config keys that vary between its runs on one dataset."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.algo, run.dataset].append(run)
    varying: dict[str, set[str]] = defaultdict(set)
    for (algo, _), group in groups.items():
        keys = set().union(*(r.identity for r in group))
        varying[algo] |= {k for k in keys if len({r.identity.get(k, "null") for r in group}) > 1}
    out = {}
    for run in runs:
        keys = sorted(varying[run.algo])
        suffix = ", ".join(f"{k}={run.identity.get(k, 'null')}" for k in keys)
        out[run.path] = f"{run.algo}[{suffix}]" if keys else run.algo
    return out


def run_rows(run: Run, label: str) -> list[dict[str, Any]]:
    """The CSV rows of one run: one per evaluation, or one empty row if it has none yet (so it is reported)."""
    base = {"algorithm": label, "algo": run.algo, "dataset": run.dataset, "task": run.task, "seed": run.seed,
            "done": run.done, "config_hash": run.path.parent.name, "run_dir": run.path.as_posix(),
            "ref_scores_source": run.ref_source}
    if not run.evals:
        return [{**base, **NO_EVALUATION, "is_last": False}]
    last = len(run.evals) - 1
    return [{**base, "stage": e.stage, "stage_index": e.stage_index, "step": e.step, **score_columns(e.scores),
             "total_step": run.stage_offsets[e.stage_index] + e.step, "is_last": i == last}
            for i, e in enumerate(run.evals)]


def collect(paths: Sequence[Path], skip_bad: bool = False) -> Collection:
    """Read every run folder under `paths` into CSV rows; a bad folder raises, or is skipped and listed."""
    runs, skipped = [], []
    for path in find_run_dirs(paths):
        try:
            runs.append(read_run(path))
        except BadRun as exc:
            if not skip_bad:
                raise
            skipped.append((path.as_posix(), str(exc)))
    if not runs:
        raise OffdiffError(f"every run folder under {', '.join(map(str, paths))} is bad; nothing to aggregate")
    check_one_data_per_dataset(runs)
    names = labels(runs)
    seen: dict[tuple[str, str, int], Path] = {}
    for run in runs:
        other = seen.setdefault((names[run.path], run.dataset, run.seed), run.path)
        if other != run.path:
            raise OffdiffError(f"{other} and {run.path} are the same algorithm, config, dataset and seed; "
                               "collect one grid at a time")
    rows = [row for run in runs for row in run_rows(run, names[run.path])]
    return Collection(rows, skipped, {run.dataset: run.data_sha256 for run in runs if run.data_sha256 is not None})
