"""Where each run of a grid stands: done, running, pending, failed or not submitted.

DONE in the run folder is the truth for done. Otherwise the run's latest job answers: what it recorded for
the run (failed, with the last error lines), else the scheduler's state of the job (SLURM through sacct;
a local job by its process), else the job ended without a word (killed, out of memory, cancelled: the tail
of its log says why). A job refused by the run's lock (another job or `offdiff train` holds the run) passes
the question to the run's job before it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from submitit.core.utils import JobPaths

from offdiff.errors import OffdiffError
from offdiff.harness.executors import by_executor
from offdiff.harness.grid import Cell
from offdiff.harness.record import JobEntry, Record, Submission, read_outcomes

PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "RESIZING",
           "PREEMPTED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
ORDER = ("done", "running", "pending", "failed", "not submitted", "unknown")


@dataclasses.dataclass(frozen=True)
class RunStatus:
    cell: Cell
    state: str
    job: str = ""
    detail: str = ""


def log_tail(submission: Submission, job_id: str, lines: int = 5) -> str:
    """The last lines of a job's stderr log (submitit's), or a note that it never wrote one."""
    path = JobPaths(submission.logs, job_id, 0).stderr
    if not path.exists():
        return f"no log at {path}: the job never started"
    tail = [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-lines:]
    return "\n".join(tail + [f"(log: {path})"])


class _JobStates:
    """Scheduler states of jobs, asked of each executor once for all its jobs (SLURM: one sacct call)."""

    def __init__(self, wanted: Sequence[tuple[Submission, JobEntry]], record: Record):
        pairs = [(submission, job.id) for submission, job in wanted]
        self.states = {backend.name: backend.job_states([job_id for _, job_id in jobs])
                       for backend, jobs in by_executor(pairs, str(record.path))}

    def __call__(self, submission: Submission, job: JobEntry) -> str:
        if JobPaths(submission.logs, job.id, 0).result_pickle.exists():
            return "COMPLETED"
        return self.states[submission.executor][job.id]


def _from_scheduler(cell: Cell, folder: Path, submission: Submission, job: JobEntry, state: str,
                    started: bool) -> RunStatus:
    if state in PENDING:
        return RunStatus(cell, "pending", job.id)
    if state in RUNNING:  # a job runs its runs in turn: one it has not started yet is queued inside it
        if started:
            return RunStatus(cell, "running", job.id)
        return RunStatus(cell, "pending", job.id, "queued inside a running job")
    if state == "UNKNOWN":
        return RunStatus(cell, "unknown", job.id, "the scheduler does not know this job (is sacct working?)")
    for cache_job in job.after:
        failed = [o for o in read_outcomes(folder, cache_job).values() if o["state"] != "cached"]
        if failed:
            return RunStatus(cell, "failed", job.id, f"{state}: it waited on cache-phase job {cache_job}, "
                                                     f"which failed: {failed[0]['error']}")
    return RunStatus(cell, "failed", job.id, f"{state} without finishing the run:\n{log_tail(submission, job.id)}")


def _damaged_done(cell: Cell) -> str | None:
    """None for a readable DONE marker; the error for a damaged one (such a run is not done)."""
    try:
        cell.planned.run_dir.done_summary()
    except OffdiffError as exc:
        return str(exc)
    return None


def run_states(cells: Sequence[Cell], folder: Path) -> list[RunStatus]:
    """The status of every cell; `folder` is the grid's harness folder."""
    record = Record(folder)
    damaged = {c.key: _damaged_done(c) for c in cells if c.planned.run_dir.is_done()}
    finished = {key for key, error in damaged.items() if error is None}
    history = {c.key: record.jobs_of(c.key) for c in cells if c.key not in finished}
    outcomes = {job.id: read_outcomes(folder, job.id) for jobs in history.values() for _, job in jobs}
    states = _JobStates([(s, j) for key, jobs in history.items() for s, j in jobs
                         if outcomes[j.id].get(key, {"state": "started"})["state"] == "started"], record)
    found = []
    for cell in cells:
        if cell.key in finished:
            found.append(RunStatus(cell, "done"))
            continue
        if damaged.get(cell.key):
            found.append(RunStatus(cell, "failed", "", damaged[cell.key]))
            continue
        status, notes = None, []
        for submission, job in reversed(history[cell.key]):  # latest first
            outcome = outcomes[job.id].get(cell.key)
            if outcome is None or outcome["state"] == "started":
                status = _from_scheduler(cell, folder, submission, job, states(submission, job), outcome is not None)
            elif outcome["state"] == "failed":
                status = RunStatus(cell, "failed", job.id, outcome["error"])
            elif outcome["state"] == "refused":
                notes.append(f"job {job.id} refused to start it: {outcome['error']}")
            if status is not None:
                break
        if status is None:  # no job left to ask: refused everywhere (failed), or only its cache phase ran
            jobs = history[cell.key]
            status = RunStatus(cell, "failed" if notes else "not submitted", jobs[-1][1].id if jobs else "")
        found.append(dataclasses.replace(status, detail="\n".join(filter(None, [status.detail, *notes]))))
    return found


def counts(statuses: Sequence[RunStatus]) -> str:
    tally = {state: sum(s.state == state for s in statuses) for state in ORDER}
    return ", ".join(f"{n} {state}" for state, n in tally.items() if n or state in ORDER[:4])


def report(statuses: Sequence[RunStatus], grid_root: Path) -> list[str]:
    """The `offdiff grid status` lines: counts, then each failed run with its last error lines."""
    lines = [f"{grid_root}: {len(statuses)} runs: {counts(statuses)}"]
    for s in statuses:
        if s.state in ("failed", "unknown"):
            lines.append(f"{s.state}: {s.cell.label} (job {s.job}) {s.cell.key}")
            lines += [f"    {line}" for line in s.detail.splitlines()]
    return lines
