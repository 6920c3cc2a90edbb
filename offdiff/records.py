"""A run's folder and the records in it: the one place that spells their keys.

`RunDir` is the folder of one run: `manifest.json`, the JSONL logs (`metrics.jsonl`, `evals.jsonl`,
`diagnostics.jsonl`), `checkpoint.pt` (or `weights.pt`), the `DONE` marker and a lock. The runner writes the
records below with `to_json()`; everything that reads a run (analysis, the harness's status, the CLI, `load_run`,
tracking) reads them with `from_json(raw, where)`, which accepts what older offdiff versions wrote and makes a
missing or invalid field a `BadRun` naming the file:

- `Manifest`: what the run is (algorithm, resolved config, protocol, stages, dataset, ...; provenance).
- `Metrics`, `ReusedStage`: the rows of metrics.jsonl (training metrics and speed; a stage loaded from the cache).
- `Evaluation`: a row of evals.jsonl, an evaluation's `Scores` at (stage, stage_index, step).
- `PolicyDiagnostic`, `QCalibration`: the rows of diagnostics.jsonl (offdiff/train/diagnostics.py).
- `Done`: the summary in DONE (headline = the last evaluation; the best one is online selection).

Files are written through offdiff/io.py (atomic replace, appended logs, one-line errors).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from offdiff import io
from offdiff.errors import OffdiffError


class RunInUse(OffdiffError):
    """Another live process holds the run's lock."""


class BadRun(OffdiffError):
    """A run folder with a missing, corrupt or half-written file (`aggregate` skips it with --skip-bad)."""


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):  # no validated field of a run file is a bool
        raise BadRun(f"{where}: missing or invalid {key!r}")
    return value


def _number(obj: Any, key: str, where: str) -> float:
    value = float(_field(obj, key, (int, float), where))
    if not math.isfinite(value):
        raise BadRun(f"{where}: {key} is not finite")
    return value


def _optional(obj: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def load_json(path: Path) -> Any:
    """The JSON in a run file; missing or damaged is a `BadRun` naming it."""
    found = io.json_or_error(path)
    if isinstance(found, FileNotFoundError):
        raise BadRun(f"{path} is missing")
    if isinstance(found, Exception):
        raise BadRun(f"{path} is not valid JSON (half-written or corrupt: {found})")
    return found


def _strict_lines(path: Path) -> list[tuple[str, Any]]:
    """(where, JSON) of every line of a JSONL log ([] when missing); an unreadable file or line is a `BadRun`."""
    try:
        lines = path.read_text().splitlines() if path.exists() else []
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRun(f"{path} cannot be read ({exc})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        where = f"{path} line {number}"
        try:
            rows.append((where, json.loads(line)))
        except ValueError:
            raise BadRun(f"{where} is not valid JSON (half-written or corrupt)") from None
    return rows


@dataclasses.dataclass(frozen=True)
class Scores:
    """One evaluation's episodes: returns (and lengths, reset seeds, normalized scores) and their means."""

    returns: list[float]
    mean_return: float
    normalized_mean: float
    normalized_std: float
    lengths: list[int] | None = None  # None: not in the row (not read)
    seeds: list[int] | None = None
    normalized: list[float] | None = None

    @property
    def episodes(self) -> int:
        return len(self.returns)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Scores:
        return cls(returns=_field(raw, "returns", list, where), mean_return=_number(raw, "mean_return", where),
                   normalized_mean=_number(raw, "normalized_mean", where),
                   normalized_std=_number(raw, "normalized_std", where), lengths=_optional(raw, "lengths", list),
                   seeds=_optional(raw, "seeds", list), normalized=_optional(raw, "normalized", list))


@dataclasses.dataclass(frozen=True)
class LogRow:
    """Where a row of a run's logs stands: after `step` steps of the stage `stage`, the run's `stage_index`-th."""

    stage: str
    stage_index: int
    step: int

    def position(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_index": self.stage_index, "step": self.step}


def _position(raw: Any, where: str) -> dict[str, Any]:
    return {"stage": _field(raw, "stage", str, where), "stage_index": _field(raw, "stage_index", int, where),
            "step": _field(raw, "step", int, where)}


@dataclasses.dataclass(frozen=True)
class Metrics(LogRow):
    """A row of metrics.jsonl: the plugin's metrics averaged over the last `steps_averaged` steps (fewer than the
    protocol's log_every when the window started at a resume), and the steps per second over them."""

    values: dict[str, float]
    steps_per_s: float
    steps_averaged: int | None  # None: a row older than the field

    def to_json(self) -> dict[str, Any]:
        return {**self.position(), **self.values, "steps_per_s": self.steps_per_s,
                "steps_averaged": self.steps_averaged}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Metrics:
        own = {"steps_per_s", "steps_averaged", *_position(raw, where)}
        values = {k: v for k, v in raw.items()
                  if k not in own and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return cls(**_position(raw, where), values=values, steps_per_s=_number(raw, "steps_per_s", where),
                   steps_averaged=_optional(raw, "steps_averaged", int))


@dataclasses.dataclass(frozen=True)
class ReusedStage(LogRow):
    """A row of metrics.jsonl: the stage was loaded from the shared cache (`artifact`) instead of trained."""

    EVENT = "reused_cached_stage"
    artifact: str

    def to_json(self) -> dict[str, Any]:
        return {**self.position(), "event": self.EVENT, "artifact": self.artifact}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> ReusedStage:
        return cls(**_position(raw, where), artifact=_field(raw, "artifact", str, where))


def metrics_from_json(raw: Any, where: str) -> Metrics | ReusedStage:
    event = isinstance(raw, dict) and "event" in raw
    return ReusedStage.from_json(raw, where) if event else Metrics.from_json(raw, where)


@dataclasses.dataclass(frozen=True)
class Evaluation(LogRow):
    """A row of evals.jsonl: an evaluation's scores."""

    scores: Scores

    def to_json(self) -> dict[str, Any]:
        return {**self.position(), **self.scores.to_json()}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Evaluation:
        return cls(**_position(raw, where), scores=Scores.from_json(raw, where))


@dataclasses.dataclass(frozen=True)
class PolicyDiagnostic(LogRow):
    """A diagnostics.jsonl row: a stage's diagnostic policy evaluated once after it (never a headline score)."""

    KIND = "policy"
    policy: str
    scores: Scores

    def to_json(self) -> dict[str, Any]:
        return {**self.position(), "kind": self.KIND, "policy": self.policy, **self.scores.to_json()}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> PolicyDiagnostic:
        return cls(**_position(raw, where), policy=_field(raw, "policy", str, where),
                   scores=Scores.from_json(raw, where))


@dataclasses.dataclass(frozen=True)
class QCalibration(LogRow):
    """A diagnostics.jsonl row: the critic's Q on dataset actions against their discounted returns-to-go."""

    KIND = "q_calibration"
    transitions: int
    discount: float
    mean_q: float
    mean_return: float
    correlation: float | None  # None: undefined (a constant Q or return)
    terminal_fraction: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> QCalibration:
        numbers = {k: _number(raw, k, where) for k in ("discount", "mean_q", "mean_return", "terminal_fraction")}
        return cls(**_position(raw, where), transitions=_field(raw, "transitions", int, where),
                   correlation=_optional(raw, "correlation", (int, float)), **numbers)


@dataclasses.dataclass(frozen=True)
class StageReport(LogRow):
    """A diagnostics.jsonl row: named finite scalars a plugin measured after a stage (`Algorithm.stage_report`)."""

    KIND = "report"
    values: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {**self.position(), "kind": self.KIND, "values": dict(self.values)}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> StageReport:
        values = _field(raw, "values", dict, where)
        return cls(**_position(raw, where), values={str(k): _number(values, k, where) for k in values})


Diagnostic = PolicyDiagnostic | QCalibration | StageReport


def diagnostic_from_json(raw: Any, where: str) -> Diagnostic:
    kind = raw.get("kind") if isinstance(raw, dict) else None
    for cls in (PolicyDiagnostic, QCalibration, StageReport):
        if kind == cls.KIND:
            return cls.from_json(raw, where)
    raise BadRun(f"{where}: a row without a known kind")


@dataclasses.dataclass(frozen=True)
class DataReturns:
    """The dataset's own average episode return (before reward transforms), raw and normalized: in the manifest."""

    episodes: int
    terminal_episodes: int
    mean_return: float
    normalized_mean: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> DataReturns | None:
        """The record, or None for a manifest without one (older runs) or with a damaged one."""
        names = [f.name for f in dataclasses.fields(cls)]
        values = {k: _optional(raw, k, (int, float)) for k in names}
        return None if None in values.values() else cls(**values)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """manifest.json: what a run is. Keys this class does not name (versions, git, device, host, slurm: see
    offdiff/provenance.py) are kept in `provenance`."""

    algorithm: str
    seed: int
    config: dict[str, Any]  # the resolved config
    protocol: dict[str, Any]
    stages: list[dict[str, Any]]  # offdiff.algorithm.Stage's fields
    dataset: dict[str, Any]  # offdiff.data.sources.DatasetInfo's fields and `ref_scores` (RefScores's)
    eval_seed: int | None = None
    task: dict[str, Any] | None = None  # the runner's PresetChoice (None: a run older than tasks)
    plugin: dict[str, Any] | None = None
    transforms: dict[str, Any] | None = None
    compile: bool | None = None
    data_returns: dict[str, Any] | None = None  # DataReturns (read it with `data_average`)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "provenance"}
        return {**fields, **self.provenance}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Manifest:
        dataset = _field(raw, "dataset", dict, where)
        config, protocol = _field(raw, "config", dict, where), _field(raw, "protocol", dict, where)
        stages = _field(raw, "stages", list, where)
        for stage in stages:
            _field(stage, "steps", int, f"{where} stages")
        _field(dataset, "dataset_id", str, f"{where} dataset")
        _field(dataset, "task", str, f"{where} dataset")
        ref = dataset.get("ref_scores")
        if isinstance(ref, dict) and ref.get("source") is not None and not isinstance(ref["source"], str):
            raise BadRun(f"{where} dataset: invalid 'ref_scores' source")
        names = {f.name for f in dataclasses.fields(cls)} - {"provenance"}
        return cls(algorithm=_field(raw, "algorithm", str, where), seed=_field(raw, "seed", int, where),
                   config=config, protocol=protocol, stages=stages, dataset=dataset,
                   **{k: raw.get(k) for k in names - {"algorithm", "seed", "config", "protocol", "stages", "dataset"}},
                   provenance={k: v for k, v in raw.items() if k not in names})

    @property
    def stage_steps(self) -> list[int]:
        return [s["steps"] for s in self.stages]

    @property
    def stage_offsets(self) -> tuple[int, ...]:
        """Training steps before each stage (stages run one after another)."""
        steps = self.stage_steps
        return tuple(sum(steps[:i]) for i in range(len(steps)))

    @property
    def trained_task(self) -> str:
        """The task whose preset the run trained with (the dataset's task for runs older than --task)."""
        return (self.task or {}).get("task", self.dataset["task"])

    @property
    def data_average(self) -> DataReturns | None:
        return DataReturns.from_json(self.data_returns)

    @property
    def ref_source(self) -> str | None:
        """Where the reference scores of the normalization came from (None: not recorded)."""
        ref = self.dataset.get("ref_scores")
        return ref.get("source") if isinstance(ref, dict) else None


@dataclasses.dataclass(frozen=True)
class Done:
    """The summary in DONE. The score fields are absent (None) for a run without evaluations."""

    run_dir: str
    wall_time_s: float | None = None
    steps: dict[str, int] | None = None  # per stage
    compute: dict[str, Any] | None = None  # train/diagnostics.py ComputeLedger.summary() (None: an older run)
    diagnostic_scores: dict[str, float] | None = None  # per diagnostic policy: its normalized score
    final_normalized_score: float | None = None  # the headline: the last evaluation
    final_normalized_std: float | None = None
    final_return: float | None = None
    episodes: int | None = None
    best_normalized_score_online_selection: float | None = None
    best_step: list[Any] | None = None  # [stage, step] of the best evaluation
    gain_over_diagnostic: dict[str, float] | None = None  # final minus each diagnostic policy's score

    @classmethod
    def summarize(cls, run_dir: str, seconds: float, steps: dict[str, int], compute: dict[str, Any],
                  evals: Sequence[Evaluation], diagnostics: Iterable[Diagnostic]) -> Done:
        policies = {d.policy: d.scores.normalized_mean for d in diagnostics if isinstance(d, PolicyDiagnostic)}
        done = cls(run_dir=run_dir, wall_time_s=round(seconds, 2), steps=steps, compute=compute,
                   diagnostic_scores=policies or None)
        if not evals:
            return done
        last, best = evals[-1].scores, max(evals, key=lambda e: e.scores.normalized_mean)
        return dataclasses.replace(
            done, final_normalized_score=last.normalized_mean, final_normalized_std=last.normalized_std,
            final_return=last.mean_return, episodes=last.episodes,
            best_normalized_score_online_selection=best.scores.normalized_mean, best_step=[best.stage, best.step],
            # e.g. EDA's alignment gain: the final policy against its behaviour model
            gain_over_diagnostic={k: last.normalized_mean - v for k, v in policies.items()} or None)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Done:
        if not isinstance(raw, dict):
            raise BadRun(f"{where} is not a DONE summary")
        known = {f.name for f in dataclasses.fields(cls)}
        done = cls(**{k: v for k, v in raw.items() if k in known and k != "run_dir"},
                   run_dir=str(raw.get("run_dir", "")))
        return dataclasses.replace(done, compute=done.compute if isinstance(done.compute, dict) else None)


class RunDir:
    """The folder of one run (algorithm, resolved config, dataset, seed)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_file: Any = None

    manifest = property(lambda self: self.path / "manifest.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    evals = property(lambda self: self.path / "evals.jsonl")
    diagnostics = property(lambda self: self.path / "diagnostics.jsonl")  # offdiff/train/diagnostics.py
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    weights = property(lambda self: self.path / "weights.pt")  # what `--keep final` leaves of the checkpoint
    done_marker = property(lambda self: self.path / "DONE")

    def is_done(self) -> bool:
        return self.done_marker.exists()

    def done_summary(self) -> Done:
        """The summary in DONE; a damaged DONE is a clear error (it is written atomically, so only damage makes one)."""
        summary = io.json_or_error(self.done_marker)
        if not isinstance(summary, dict):
            raise OffdiffError(f"DONE marker {self.done_marker} is corrupt ({summary}); move it away to finish the run "
                               "again from its checkpoint") from None
        return Done.from_json(summary, str(self.done_marker))

    def read_manifest(self) -> Manifest:
        """The run's manifest; missing or damaged is a `BadRun` naming the file."""
        return Manifest.from_json(load_json(self.manifest), str(self.manifest))

    def check_manifest(self, expected: Manifest, keys: Iterable[str]) -> None:
        """The run's manifest.json is readable and names this run (`keys` of `expected`); else a clear error."""
        found = io.json_or_error(self.manifest)
        if not isinstance(found, dict):
            raise OffdiffError(f"manifest {self.manifest} is corrupt ({found}); move the run folder away to start it "
                               "again")
        plain = json.loads(json.dumps(expected.to_json(), default=str))
        differ = [k for k in keys if found.get(k) != plain.get(k)]
        if differ:
            raise OffdiffError(f"manifest {self.manifest} describes another run ({', '.join(differ)} differ); move the "
                               "run folder away to start this run there")

    def evaluations(self, strict: bool = False) -> list[Evaluation]:
        """The rows of evals.jsonl; `strict`: a damaged line is a `BadRun` (else a line cut short is left out)."""
        return [Evaluation.from_json(raw, where) for where, raw in self._rows(self.evals, strict)]

    def metric_rows(self, strict: bool = False) -> list[Metrics | ReusedStage]:
        """The rows of metrics.jsonl, read as `evaluations` reads evals.jsonl."""
        return [metrics_from_json(raw, where) for where, raw in self._rows(self.metrics, strict)]

    def diagnostic_rows(self, strict: bool = False) -> list[Diagnostic]:
        """The rows of diagnostics.jsonl, read as `evaluations` reads evals.jsonl."""
        return [diagnostic_from_json(raw, where) for where, raw in self._rows(self.diagnostics, strict)]

    @staticmethod
    def _rows(path: Path, strict: bool) -> list[tuple[str, Any]]:
        return _strict_lines(path) if strict else [(str(path), row) for row in io.read_jsonl(path)]

    def keep_final(self) -> None:
        """Replace a finished run's checkpoint by its final weights: the modules and the algorithm's generator,
        without optimizer and scheduler state or RNG streams (the run is done and never resumes)."""
        if not (self.is_done() and self.checkpoint.exists()):
            return
        state = io.torch_load(self.checkpoint, "checkpoint")
        algorithm = state["algorithm"]
        io.atomic_torch_save(self.weights, {"position": state["position"], "modules": algorithm["modules"],
                                            "generator": algorithm["generator"]})
        self.checkpoint.unlink()

    def lock(self) -> None:
        """Take an exclusive lock for this process; another live process holding it is an error."""
        handle = io.open_to_append(self.path / ".lock")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunInUse(f"run {self.path} is in use by another process; not starting a second copy") from None
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def append(self, path: Path, row: dict[str, Any]) -> None:
        io.append_line(path, row)

    def rewind_logs(self, position: tuple[int, int]) -> None:
        """Drop log rows written after the checkpoint at (stage index, step): they will be written again."""
        for path in (self.metrics, self.evals, self.diagnostics):
            io.atomic_write_jsonl(path, [r for r in io.read_jsonl(path) if (r["stage_index"], r["step"]) <= position])
