"""The harness on a real one-node SLURM cluster (tests/slurm_cluster.sh): a grid as a job array, a job
preempted with SIGUSR2 that requeues and resumes to the same result as an uninterrupted run, a cancelled
job reported as failed, and `grid status` along the way."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_harness import ONE_ENTRY, cells_of, grid_cli, grid_file, profile_file, same_checkpoint

from offdiff.harness.record import Record, harness_dir

SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
pytestmark = pytest.mark.slurm


def _why_not() -> str | None:
    installed = all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged"))
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmctld/slurmd run as SlurmUser=root)"
    if not installed and not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install Debian's packages"
    return None


def _free_port_pair() -> int:
    """A port p with p and p+1 free (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


@pytest.fixture(scope="module")
def slurm() -> Iterator[Path]:
    """A fresh cluster for this module (4 advertised CPUs), its env in os.environ; stopped and removed afterwards.

    Its folder is a new one in the system's temp folder: munged refuses a socket below a private folder.
    """
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="offdiff-slurm-"))
    env = {**os.environ, "SLURM_ROOT": str(root), "SLURM_CPUS": "4", "SLURM_PORT": str(_free_port_pair())}
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert started.returncode == 0, f"tests/slurm_cluster.sh start failed:\n{started.stdout}\n{started.stderr}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(root / "slurm.conf"))
            mp.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")  # the sacct stand-in
            yield root
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def status(capsys: pytest.CaptureFixture, grid: Path, runs: Path) -> str:
    """`offdiff grid status`'s first line, after the run folder: "N runs: ..." """
    code, out = grid_cli(capsys, "status", grid, "--runs-dir", runs)
    assert code == 0, out
    return out.splitlines()[0].split(": ", 1)[1]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            squeue = subprocess.run(["squeue", "--states=all"], capture_output=True, text=True).stdout
            raise AssertionError(f"timed out waiting for {what}; squeue:\n{squeue}")
        time.sleep(0.1)


SLURM_PROFILE = """\
executor: slurm
partition: debug
gpus: 0
cpus: 1
mem_gb: 0.25
time_min: 60
signal_delay_s: 30
array_limit: 10
runs_per_job: 1
"""


def test_grid_as_slurm_array_preempted_job_resumes_exactly(slurm, tmp_path, capsys):
    grid = grid_file(tmp_path, ONE_ENTRY, steps=800)  # 2 seeds
    profile = profile_file(tmp_path, SLURM_PROFILE)
    runs, reference = tmp_path / "runs", tmp_path / "reference"
    for folder in (runs, reference):  # the same grid twice: once preempted, once straight
        code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", folder)
        assert code == 0 and "submitted train-phase array: jobs" in out, out
    [submission] = Record(harness_dir(runs.resolve(), "g")).submissions
    ids = [job.id for job in submission.jobs]
    assert len(ids) == 2 and len({i.split("_")[0] for i in ids}) == 1  # one array of two jobs
    both_running = "2 runs: 0 done, 2 running, 0 pending, 0 failed"
    wait_for("status to report both jobs running", lambda: status(capsys, grid, runs) == both_running)

    cells, straight = cells_of(grid, runs), cells_of(grid, reference)
    victim = cells[1].planned.run_dir
    [job_id] = [job.id for job in submission.jobs if job.runs == [cells[1].key]]
    wait_for("the first checkpoint", victim.checkpoint.exists)
    assert not victim.is_done()
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    # Requeued, it waits at least cred_expire (10 s) before it starts again: pending meanwhile.
    wait_for("status to report the requeued job", lambda: "1 pending, 0 failed" in status(capsys, grid, runs))

    every = [c.planned.run_dir for c in (*cells.values(), *straight.values())]
    wait_for("all four runs", lambda: all(r.is_done() for r in every))
    log = Path(submission.logs.replace("%j", job_id), f"{job_id}_0_log.err").read_text()
    assert "Caught signal SIGUSR2" in log and "this job is preempted" in log
    assert log.count(f"[offdiff grid] job {job_id}: {cells[1].key}") == 2  # started, requeued, started again
    same_checkpoint(victim, straight[1].planned.run_dir)
    assert [json.loads(line)["returns"] for line in victim.evals.read_text().splitlines()] == \
        [json.loads(line)["returns"] for line in straight[1].planned.run_dir.evals.read_text().splitlines()]
    assert status(capsys, grid, runs) == "2 runs: 2 done, 0 running, 0 pending, 0 failed"


def test_cancelled_job_is_reported_failed_with_its_log(slurm, tmp_path, capsys):
    grid = grid_file(tmp_path, ONE_ENTRY, seeds="[0]", steps=100_000)
    profile, runs = profile_file(tmp_path, SLURM_PROFILE), tmp_path / "runs"
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)
    assert code == 0, out
    [job] = Record(harness_dir(runs.resolve(), "g")).submissions[0].jobs
    run = cells_of(grid, runs)[0].planned.run_dir
    wait_for("the run to start", run.manifest.exists)
    subprocess.run(["scancel", job.id], check=True)

    wait_for("status to report the cancelled job", lambda: "1 failed" in status(capsys, grid, runs), timeout=60)
    # slurmstepd appends "CANCELLED AT" to the job's log a moment after the scheduler reports the state
    wait_for("the log's tail", lambda: "CANCELLED AT" in grid_cli(capsys, "status", grid, "--runs-dir", runs)[1],
             timeout=30)
    code, out = grid_cli(capsys, "status", grid, "--runs-dir", runs)
    assert f"failed: dql toy:four_corners seed=0 (job {job.id})" in out
    assert "CANCELLED without finishing the run" in out and "CANCELLED AT" in out  # the log's tail
    code, out = grid_cli(capsys, "resubmit", grid, "--profile", profile, "--runs-dir", runs, "--dry-run")
    assert "to submit: 1 (failed)" in out
