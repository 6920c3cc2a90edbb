"""Concurrent packing (a profile's `concurrency`): a job's runs train at once in worker processes, equal to the
same runs trained in turn; a preempted job requeues and resumes all of them; a failing run leaves its
neighbours finished; the dry-run estimate; CUDA MPS's daemon; one-line errors for impossible shapes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_harness import LOCAL, ONE_ENTRY, cells_of, grid_cli, grid_file, profile_file, same_checkpoint

from offdiff.errors import OffdiffError
from offdiff.harness.mps import cuda_mps
from offdiff.harness.pool import _Worker
from offdiff.harness.record import Record, harness_dir, read_outcomes
from offdiff.io import read_jsonl

CONCURRENT = "executor: debug\ncpus: 2\nruns_per_job: 2\nconcurrency: 2\n"  # two runs at once, one thread each
IN_TURN = "executor: debug\ncpus: 1\nruns_per_job: 2\n"  # the same runs one after another, one thread


def run_logs(runs: Path) -> list[Path]:
    return sorted((harness_dir(runs.resolve(), "g") / "logs").glob("*/*/*_run*.log"))


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "steps_per_s"} for row in rows]


@pytest.mark.slow
def test_packed_runs_train_at_once_and_equal_runs_in_turn(tmp_path, capsys):
    grid, runs = grid_file(tmp_path, ONE_ENTRY, steps=150), tmp_path / "runs"
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile_file(tmp_path, CONCURRENT), "--runs-dir", runs)
    assert code == 0 and "2 done" in out, out
    assert "each job trains up to 2 runs at once, 1 torch thread(s) each" in out
    cells = cells_of(grid, runs)
    spans = [(c.planned.run_dir.manifest.stat().st_mtime, c.planned.run_dir.done_marker.stat().st_mtime)
             for c in cells.values()]
    assert max(start for start, _ in spans) < min(end for _, end in spans), "the two runs overlapped in time"
    logs = run_logs(runs)
    assert len(logs) == 2 and all(log.read_text().startswith("== job ") for log in logs), "one log per run"

    reference = tmp_path / "in_turn"
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile_file(tmp_path, IN_TURN), "--runs-dir",
                         reference)
    assert code == 0 and "2 done" in out and not run_logs(reference), out
    for seed, cell in cells_of(grid, reference).items():
        run, ref = cells[seed].planned.run_dir, cell.planned.run_dir
        same_checkpoint(run, ref)
        assert read_jsonl(run.evals) == read_jsonl(ref.evals)
        assert without_timing(read_jsonl(run.metrics)) == without_timing(read_jsonl(ref.metrics))


def _job_process(controller: int) -> int:
    """The job's own process: the child of submitit's local controller, whose pid is the job id."""
    deadline = time.time() + 60
    while time.time() < deadline:
        children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("the local job never started its process")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the job's process through Linux's /proc")
def test_preempted_job_requeues_and_resumes_every_run(tmp_path):
    grid, runs = grid_file(tmp_path, ONE_ENTRY, steps=300), tmp_path / "runs"
    profile = profile_file(tmp_path, LOCAL.replace("cpus: 1", "cpus: 2") + "concurrency: 2\n")
    submit = subprocess.Popen([sys.executable, "-m", "offdiff.cli", "grid", "submit", str(grid), "--profile",
                               str(profile), "--runs-dir", str(runs)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    cells = cells_of(grid, runs)
    try:
        deadline = time.time() + 120
        while not all(c.planned.run_dir.checkpoint.exists() for c in cells.values()) and time.time() < deadline:
            assert submit.poll() is None, submit.stdout.read()
            time.sleep(0.02)
        assert not any(c.planned.run_dir.is_done() for c in cells.values()), "too fast to preempt: raise steps"
        [job] = Record(harness_dir(runs.resolve(), "g")).submissions[0].jobs
        os.kill(_job_process(int(job.id)), signal.SIGUSR2)  # as SLURM at preemption (workers ignore it)
        out, _ = submit.communicate(timeout=300)
    finally:
        submit.kill()
    assert submit.returncode == 0 and "2 done" in out, out
    for cell in cells.values():
        run = cell.planned.run_dir
        assert [r["step"] for r in read_jsonl(run.metrics)] == list(range(50, 301, 50)), "resumed, not restarted"
    logs = run_logs(runs)
    assert len(logs) == 2 and all(log.read_text().count("== job ") == 2 for log in logs), "both restarted once"
    assert {o["state"] for o in read_outcomes(harness_dir(runs.resolve(), "g"), job.id).values()} == {"done"}


@pytest.mark.slow
def test_a_failing_run_leaves_its_neighbour_finished(tmp_path, capsys):
    grid, runs = grid_file(tmp_path, ONE_ENTRY, steps=100), tmp_path / "runs"
    cells = cells_of(grid, runs)
    broken = cells[0].planned.run_dir
    broken.path.mkdir(parents=True)
    broken.checkpoint.write_bytes(b"not a checkpoint")
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile_file(tmp_path, CONCURRENT), "--runs-dir", runs)
    assert code == 1 and "1 done, 0 running, 0 pending, 1 failed" in out, out
    assert cells[1].planned.run_dir.is_done() and not broken.is_done()
    code, out = grid_cli(capsys, "status", grid, "--runs-dir", runs)
    assert f"OffdiffError: checkpoint {broken.checkpoint} is corrupt or truncated" in out


def test_dry_run_estimates_gpu_hours_with_concurrency(tmp_path, capsys):
    grid = grid_file(tmp_path, f"{ONE_ENTRY}", seeds="[0, 1, 2]", steps=100)
    base = "partition: gpu\ncpus: 4\nruns_per_job: 3\ngpu_hours_per_step: 1.0e-3\n"
    estimates = {}
    for name, extra in (("in turn", ""), ("unknown", "concurrency: 2\n"),
                        ("measured", "concurrency: 2\nconcurrent_speedup: 1.6\ncuda_mps: true\n")):
        code, out = grid_cli(capsys, "submit", grid, "--profile", profile_file(tmp_path, base + extra), "--runs-dir",
                             tmp_path / "runs", "--dry-run")
        assert code == 0, out
        estimates[name] = next(line for line in out.splitlines() if line.startswith("estimated:"))
    # In turn: 3 runs × 100 steps. Two at once at speed-up s: each run takes 2/s of its time alone, and the
    # third starts when one of the first two ends: 2 × (2/s) × 0.1 h.
    assert estimates["in turn"].startswith("estimated: 0.30 GPU-hours for 300 training steps")
    assert estimates["unknown"].startswith("estimated: 0.40 GPU-hours") and "no speed-up" in estimates["unknown"]
    assert estimates["measured"].startswith("estimated: 0.25 GPU-hours") and "1.6x" in estimates["measured"]
    assert "each job trains up to 2 runs at once, 2 torch thread(s) each, through CUDA MPS" in out


@pytest.mark.parametrize(("body", "message"), [
    ("runs_per_job: 2\nconcurrency: 3\n", "concurrency=3 is more than runs_per_job=2"),
    ("cpus: 1\nruns_per_job: 2\nconcurrency: 2\n", "concurrency=2 needs at least 2 cpus"),
    ("cpus: 2\nruns_per_job: 2\nconcurrency: 2\nconcurrent_speedup: 2.5\n", "concurrent_speedup=2.5 is more than"),
    ("runs_per_job: 2\ncuda_mps: true\n", "cuda_mps shares a GPU between concurrent runs"),
    ("cpus: 2\nruns_per_job: 2\nconcurrency: 2\ngpus: 0\ncuda_mps: true\n", "needs concurrency > 1 and gpus > 0"),
])
def test_impossible_concurrency_is_a_one_line_error(tmp_path, capsys, body, message):
    grid = grid_file(tmp_path, ONE_ENTRY)
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile_file(tmp_path, "partition: gpu\n" + body),
                         "--runs-dir", tmp_path / "runs", "--dry-run")
    assert code == 2 and out.strip().splitlines()[-1].startswith("offdiff: error: ") and message in out, out


def test_cuda_mps_daemon_is_private_to_the_job_and_stopped(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "nvidia-cuda-mps-control"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$* pipe=$CUDA_MPS_PIPE_DIRECTORY stdin=$(cat)" >> {calls}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with cuda_mps(tmp_path / "logs") as env:
        assert Path(env["CUDA_MPS_PIPE_DIRECTORY"]).is_dir() and Path(env["CUDA_MPS_LOG_DIRECTORY"]).is_dir()
        assert calls.read_text().startswith(f"-d pipe={env['CUDA_MPS_PIPE_DIRECTORY']}")
    started, stopped = calls.read_text().splitlines()
    assert stopped == f" pipe={env['CUDA_MPS_PIPE_DIRECTORY']} stdin=quit"
    assert not Path(env["CUDA_MPS_PIPE_DIRECTORY"]).exists() and (tmp_path / "logs" / "mps-log").is_dir()

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(OffdiffError, match="nvidia-cuda-mps-control is not on PATH"), cuda_mps(tmp_path / "logs"):
        pass


def test_a_worker_that_dies_without_an_outcome_is_a_failed_run_with_its_log_tail(tmp_path):
    log = tmp_path / "job_run0.log"
    log.write_text("== job 1, run 0: r ==\nstep 50/300\nsomething went wrong natively\n")
    died = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    died.wait()
    request = tmp_path / "job_run0.request.pkl"
    request.write_bytes(b"")
    state, error = _Worker("r", died, request, tmp_path / "job_run0.result.json", log).outcome()
    assert state == "failed" and error.startswith("the run's worker was killed by signal 9 without an outcome")
    assert "something went wrong natively" in error and error.endswith(f"(log: {log})") and not request.exists()
