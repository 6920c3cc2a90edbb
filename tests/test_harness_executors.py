"""A new backend is one registered class: a fourth executor, defined here and nowhere else, takes a grid through
submit, status, cancel and resubmit."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
import submitit
from test_harness import ONE_ENTRY, cells_of, grid_cli, grid_file, profile_file

from offdiff.cli import main
from offdiff.harness import executors
from offdiff.harness.executors import Executor, Submit, register
from offdiff.harness.profile import Profile
from offdiff.harness.record import Record, Submission, harness_dir
from offdiff.harness.schedule import Job

STATES = {"QUEUED": "PENDING", "CANCELLED": "CANCELLED", "DONE": "COMPLETED"}  # submitit's debug job -> scheduler


class Queue(Executor):
    """Like a scheduler: `launch` queues the jobs and returns; they run, in this process, when the test says so."""

    name = "queue"
    waits = False
    raise_on_failure = False  # a job runs in the test's process, where submitit's debug job would open pdb
    queued: ClassVar[dict[str, submitit.Job]] = {}

    def make(self, profile: Profile, logs: Path, name: str, after: list[str]) -> submitit.Executor:
        return submitit.DebugExecutor(logs)  # its jobs run only when waited for

    def launch(self, submit: Submit, jobs: Sequence[Job], profile: Profile, tick: Callable[[], None]) -> None:
        self.queued.update((job.job_id, job) for job in submit(jobs))

    def job_states(self, job_ids: Sequence[str]) -> dict[str, str]:
        return {job_id: STATES[self.queued[job_id].state] for job_id in job_ids}

    def cancel(self, jobs: Sequence[tuple[Submission, str]]) -> list[str]:
        for _, job_id in jobs:
            self.queued[job_id].cancel()
        return sorted({job_id for _, job_id in jobs})


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> dict[str, submitit.Job]:
    """`queue` registered for this test only; its queue of jobs."""
    monkeypatch.setattr(executors, "_REGISTERED", dict(executors._REGISTERED))
    monkeypatch.setattr(Queue, "queued", {})
    register(Queue)
    return Queue.queued


def _states(capsys: pytest.CaptureFixture, grid: Path, runs: Path) -> dict[str, str]:
    capsys.readouterr()  # what the jobs printed
    assert main(["grid", "status", str(grid), "--runs-dir", str(runs), "--json"]) == 0
    return {run["key"]: run["state"] for run in json.loads(capsys.readouterr().out)["runs"]}


def test_a_registered_fourth_executor_runs_a_grid(tmp_path, capsys, queue):
    grid, runs = grid_file(tmp_path, ONE_ENTRY, steps=60), tmp_path / "runs"
    profile = profile_file(tmp_path, "executor: queue\ncpus: 1\nruns_per_job: 1\n")
    first, second = (c.key for _, c in sorted(cells_of(grid, runs).items()))

    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)
    assert code == 0 and "executor=queue" in out and "follow with: offdiff grid status" in out, out
    [submission] = Record(harness_dir(runs.resolve(), "g")).submissions
    assert submission.executor == "queue" and len(queue) == 2
    job_of = {run: job.id for job in submission.jobs for run in job.runs}
    assert _states(capsys, grid, runs) == {first: "pending", second: "pending"}

    queue[job_of[first]].wait()  # the "scheduler" runs one job
    assert _states(capsys, grid, runs) == {first: "done", second: "pending"}

    code, out = grid_cli(capsys, "cancel", grid, "--runs-dir", runs)
    assert code == 0 and f"cancelled 1 job(s): {job_of[second]}" in out, out
    assert _states(capsys, grid, runs) == {first: "done", second: "failed"}

    code, out = grid_cli(capsys, "resubmit", grid, "--profile", profile, "--runs-dir", runs, "--executor", "queue")
    assert code == 0 and "to submit: 1" in out, out
    [again] = [job for job in queue.values() if job.state == "QUEUED"]
    again.wait()
    assert _states(capsys, grid, runs) == {first: "done", second: "done"}


def test_a_record_naming_an_executor_no_longer_registered_is_one_line(tmp_path, capsys, queue):
    grid, runs = grid_file(tmp_path, ONE_ENTRY, seeds="[0]", steps=60), tmp_path / "runs"
    profile = profile_file(tmp_path, "executor: queue\ncpus: 1\n")
    assert grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)[0] == 0
    del executors._REGISTERED["queue"]  # e.g. `grid status` from a session that does not register it
    code, out = grid_cli(capsys, "status", grid, "--runs-dir", runs)
    record = harness_dir(runs.resolve(), "g") / "submissions.json"
    assert code == 2 and out.strip() == (f"offdiff: error: {record}: executor='queue' is not one of "
                                         f"['slurm', 'local', 'debug']")


def test_each_built_in_executor_is_registered_under_its_own_name():
    assert executors.names()[:3] == ["slurm", "local", "debug"]
    assert all(executors.get_executor(name).name == name for name in executors.names())
