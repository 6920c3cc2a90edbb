"""Run folders -> scores CSV rows: one row per evaluation, labelled so that every config is its own algorithm.

A run folder is what `offdiff.train.runner` writes: `manifest.json`, `evals.jsonl` and, once finished,
`DONE`. Files are read strictly: a half-written or corrupt file is a `BadRun` naming the file, never a
silently dropped row. An algorithm that appears with several configs on one dataset (an EDA beta sweep)
gets a label per config: its name plus the config keys that differ, e.g. `eda[beta=0.1]`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from offdiff.errors import OffdiffError

RUN_FILES = ("manifest.json", "evals.jsonl", "DONE")
NO_EVALUATION = dict.fromkeys(
    ("stage", "stage_index", "step", "total_step", "normalized", "normalized_std", "return", "episodes")
)


class BadRun(OffdiffError):
    """A run folder with a missing, corrupt or half-written file (skippable with --skip-bad)."""


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
    evals: tuple[dict[str, Any], ...]
    done: bool


@dataclasses.dataclass(frozen=True)
class Collection:
    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]]  # (run folder, reason)


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


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadRun(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadRun(f"{path} is not valid JSON (half-written or corrupt: {exc})") from None


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):  # no field of a run file is a bool
        raise BadRun(f"{where}: missing or invalid {key!r}")
    return value


def _number(obj: Any, key: str, where: str) -> float:
    value = float(_field(obj, key, (int, float), where))
    if not math.isfinite(value):
        raise BadRun(f"{where}: {key} is not finite")
    return value


def _eval_rows(path: Path, n_stages: int) -> tuple[dict[str, Any], ...]:
    try:
        lines = path.read_text().splitlines() if path.exists() else []
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRun(f"{path} cannot be read ({exc})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        where = f"{path} line {number}"
        try:
            raw = json.loads(line)
        except ValueError:
            raise BadRun(f"{where} is not valid JSON (half-written or corrupt)") from None
        returns = _field(raw, "returns", list, where)
        row = {"stage": _field(raw, "stage", str, where), "stage_index": _field(raw, "stage_index", int, where),
               "step": _field(raw, "step", int, where), "normalized": _number(raw, "normalized_mean", where),
               "normalized_std": _number(raw, "normalized_std", where),
               "return": _number(raw, "mean_return", where), "episodes": len(returns)}
        if not returns or not 0 <= row["stage_index"] < n_stages:
            raise BadRun(f"{where}: no episode returns or a stage_index the manifest does not have")
        if rows and (row["stage_index"], row["step"]) <= (rows[-1]["stage_index"], rows[-1]["step"]):
            raise BadRun(f"{where}: evaluations out of order or repeated")
        rows.append(row)
    return tuple(rows)


def read_run(path: Path) -> Run:
    """One run folder, validated; a missing or damaged file is a `BadRun` naming it."""
    manifest_path = path / "manifest.json"
    manifest = _load_json(manifest_path)
    where = str(manifest_path)
    dataset = _field(manifest, "dataset", dict, where)
    config = _field(manifest, "config", dict, where)
    protocol = _field(manifest, "protocol", dict, where)
    stages = _field(manifest, "stages", list, where)
    steps = [_field(s, "steps", int, f"{where} stages") for s in stages]
    evals = _eval_rows(path / "evals.jsonl", len(steps))
    done = (path / "DONE").exists()
    if done:
        summary = _load_json(path / "DONE")
        final = summary.get("final_normalized_score") if isinstance(summary, dict) else None
        if final is not None and (not evals or evals[-1]["normalized"] != final):
            raise BadRun(f"{path / 'evals.jsonl'} does not end with the final evaluation that DONE reports")
    ref = dataset.get("ref_scores")
    ref_source = ref.get("source") if isinstance(ref, dict) else None
    if ref_source is not None and not isinstance(ref_source, str):
        raise BadRun(f"{where} dataset: invalid 'ref_scores' source")
    identity = {k: json.dumps(v, sort_keys=True) if not isinstance(v, str) else v for k, v in
                {**config, **{f"protocol.{k}": v for k, v in protocol.items()}}.items()}
    return Run(
        path=path, algo=_field(manifest, "algorithm", str, where),
        dataset=_field(dataset, "dataset_id", str, f"{where} dataset"),
        task=_field(dataset, "task", str, f"{where} dataset"), ref_source=ref_source,
        seed=_field(manifest, "seed", int, where),
        identity=identity, stage_offsets=tuple(sum(steps[:i]) for i in range(len(steps))), evals=evals, done=done,
    )


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
    return [{**base, **e, "total_step": run.stage_offsets[e["stage_index"]] + e["step"], "is_last": i == last}
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
    names = labels(runs)
    seen: dict[tuple[str, str, int], Path] = {}
    for run in runs:
        other = seen.setdefault((names[run.path], run.dataset, run.seed), run.path)
        if other != run.path:
            raise OffdiffError(f"{other} and {run.path} are the same algorithm, config, dataset and seed; "
                               "collect one grid at a time")
    rows = [row for run in runs for row in run_rows(run, names[run.path])]
    return Collection(rows, skipped)
