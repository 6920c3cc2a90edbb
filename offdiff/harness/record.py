"""The harness's own files under `runs/<grid>/_harness/`: the submission record and the jobs' outcomes.

`submissions.json` (written by `offdiff grid submit`, atomically, after every array it submits) lists each
submission's executor, profile, log folder and jobs: job id, phase, the runs it holds and the cache-phase jobs
it waits for. `outcomes/<job id>.json` (written by the job itself, atomically, after each run) holds what
became of each of its runs: started, done, cached (cache phase finished), failed or refused, with the last error
lines.
Run folders hold only what the runner writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from offdiff.errors import OffdiffError
from offdiff.io import atomic_write_json
from offdiff.records import RunDir, RunInUse

HARNESS = "_harness"


def harness_dir(runs_root: Path, grid_name: str) -> Path:
    return Path(runs_root) / grid_name / HARNESS


@contextlib.contextmanager
def submitting(folder: Path) -> Iterator[None]:
    """Only one `offdiff grid submit` at a time per grid (a second would submit the same runs twice)."""
    lock = RunDir(folder)
    try:
        lock.lock()
    except RunInUse:
        raise OffdiffError(f"another `offdiff grid submit` is working on {folder.parent}; wait for it") from None
    try:
        yield
    finally:
        lock.unlock()


@dataclasses.dataclass(frozen=True)
class JobEntry:
    id: str
    phase: str
    runs: list[str]
    after: list[str]


@dataclasses.dataclass(frozen=True)
class Submission:
    at: str
    executor: str
    profile: str
    logs: str
    jobs: list[JobEntry]


class Record:
    """Every submission of one grid, in order."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "submissions.json"
        self.submissions: list[Submission] = []
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self.submissions = [Submission(**{**s, "jobs": [JobEntry(**j) for j in s["jobs"]]})
                                    for s in raw["submissions"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise OffdiffError(f"submission record {self.path} is unreadable ({exc}); move it away") from None

    def start(self, executor: str, profile: str, logs: Path) -> Submission:
        submission = Submission(time.strftime("%Y-%m-%dT%H:%M:%S"), executor, profile, str(logs), [])
        self.submissions.append(submission)
        return submission

    def save(self) -> None:
        atomic_write_json(self.path, {"submissions": [dataclasses.asdict(s) for s in self.submissions]})

    def jobs_of(self, run: str) -> list[tuple[Submission, JobEntry]]:
        """The jobs that held a run, oldest first."""
        return [(s, j) for s in self.submissions for j in s.jobs if run in j.runs]


def outcome_path(folder: Path, job_id: str) -> Path:
    return Path(folder) / "outcomes" / f"{job_id}.json"


def read_outcomes(folder: Path, job_id: str) -> dict[str, dict[str, Any]]:
    path = outcome_path(folder, job_id)
    return json.loads(path.read_text()) if path.exists() else {}


def write_outcome(folder: Path, job_id: str, run: str, state: str, error: str = "") -> None:
    """Record what became of one run of a job (only that job writes its file, so read-modify-write is safe)."""
    outcomes = read_outcomes(folder, job_id)
    outcomes[run] = {"state": state, "error": error, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(outcome_path(folder, job_id), outcomes)
