"""Watching a grid: `grid status` (table, --json, --watch), `grid cancel`, and progress lines in job logs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from offdiff.cli import main
from offdiff.harness.grid import expand, load_grid
from offdiff.harness.record import write_outcome
from offdiff.io import atomic_write_json
from offdiff.progress import Progress
from offdiff.records import Evaluation, Manifest, Metrics, Scores

GRID = ("name: g\ndatasets: [toy:four_corners]\nseeds: [0, 1]\nalgorithms: [dql, {name: bc_like, algo: dql, "
        "overrides: {eta: 0.0}}]\nbudget: {steps: 20}\nprotocol: {eval_every: 20, eval_episodes: 5, eval_envs: 5, "
        "log_every: 10}\n")


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(GRID)
    return path


def _status(capsys, grid: Path, runs: Path, *extra: str) -> str:
    assert main(["grid", "status", str(grid), "--runs-dir", str(runs), *extra]) == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_status_table_and_json_of_a_finished_grid(tmp_path, grid, capsys):
    profile = tmp_path / "p.yaml"
    profile.write_text("executor: debug\ncpus: 1\n")
    runs = tmp_path / "runs"
    before = json.loads(_status(capsys, grid, runs, "--json"))
    assert before["counts"]["not submitted"] == 4 and all(r["not submitted"] == 2 for r in before["table"])
    assert main(["grid", "submit", str(grid), "--profile", str(profile), "--runs-dir", str(runs)]) == 0
    capsys.readouterr()

    view = json.loads(_status(capsys, grid, runs, "--json"))
    assert view["counts"]["done"] == 4
    assert {(r["algorithm"], r["dataset"], r["done"]) for r in view["table"]} == {
        ("dql", "toy:four_corners", 2), ("bc_like", "toy:four_corners", 2)}
    for run in view["runs"]:
        evals = (runs / "g" / run["key"] / "evals.jsonl").read_text().splitlines()
        assert run["score"] == pytest.approx(json.loads(evals[-1])["normalized_mean"])
        assert run["step"] == run["total"] == 20  # Diffusion-QL: one stage of the protocol's 20 steps
    table = _status(capsys, grid, runs)
    assert "algorithm" in table and "ETA" in table and "bc_like" in table
    assert main(["grid", "status", str(grid), "--runs-dir", str(runs), "--watch", "0.01"]) == 0  # all done: stops
    assert "4 done" in capsys.readouterr().out


def _fake_running_run(tmp_path: Path, grid: Path, job: str, executor: str = "local") -> Path:
    """The first run of the grid as a job would leave it while training: manifest, logged steps, one evaluation,
    and a submission record naming `job`."""
    runs = tmp_path / "runs"
    cell = expand(load_grid(grid), runs.resolve())[0]
    run = cell.planned.run_dir
    atomic_write_json(run.manifest, Manifest(
        algorithm="dql", seed=0, config={}, protocol={}, stages=[{"name": "train", "steps": 100}],
        dataset={"dataset_id": "toy/four_corners", "task": "toy-four_corners"}).to_json())
    run.path.joinpath("metrics.jsonl").write_text("".join(
        json.dumps(Metrics("train", 0, s, {"critic_loss": 1.0}, steps_per_s=10.0, steps_averaged=10).to_json()) + "\n"
        for s in (10, 20, 30, 40)))
    scores = Scores(returns=[1.0], mean_return=1.0, normalized_mean=12.5, normalized_std=1.0)
    run.path.joinpath("evals.jsonl").write_text(json.dumps(Evaluation("train", 0, 40, scores).to_json()) + "\n")
    logs = runs / "g" / "_harness" / "logs" / "20260101-000000-999999999" / "%j"
    atomic_write_json(runs / "g" / "_harness" / "submissions.json", {"submissions": [{
        "at": "2026-01-01T00:00:00", "executor": executor, "profile": "p.yaml", "logs": str(logs),
        "jobs": [{"id": job, "phase": "train", "runs": [cell.key], "after": []}]}]})
    write_outcome(runs / "g" / "_harness", job, cell.key, "started")  # the job has begun this run
    return runs


def test_status_shows_progress_score_and_eta_of_a_running_run_and_cancel_stops_it(tmp_path, grid, capsys):
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # a submitit job stand-in"],
                           preexec_fn=_sigint_as)  # a job of a submitter that handles SIGINT gets its default
    try:
        runs = _fake_running_run(tmp_path, grid, str(job.pid))
        view = json.loads(_status(capsys, grid, runs, "--json"))
        (running,) = [r for r in view["runs"] if r["state"] == "running"]
        assert (running["step"], running["total"], running["score"]) == (40, 100, 12.5)
        assert running["eta_s"] == pytest.approx(6.0)  # 60 steps left at 10 steps/s
        (row,) = [r for r in view["table"] if r["running"]]
        assert row["progress"] == pytest.approx(0.4) and row["eta_s"] == pytest.approx(6.0) == view["eta_s"]
        table = _status(capsys, grid, runs)
        assert "40%" in table and "12.5" in table and "0:00:06" in table
        assert "the running runs end in about 0:00:06; 3 pending or unsubmitted run(s) not estimated" in table

        assert main(["grid", "cancel", str(grid), "--runs-dir", str(runs)]) == 0
        assert f"cancelled 1 job(s): {job.pid}" in capsys.readouterr().out
        assert job.wait(timeout=30) != 0
    finally:
        job.kill()


def test_cancel_on_slurm_calls_scancel_with_the_grid_jobs(tmp_path, grid, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (("scancel", f'echo "$@" > {tmp_path}/scancel.args\n'),
                         ("sacct", "printf 'JobID|State|NodeList\\n4242_0|RUNNING|node1\\n'\n"), ("squeue", "true\n")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runs = _fake_running_run(tmp_path, grid, "4242_0", executor="slurm")
    assert main(["grid", "cancel", str(grid), "--runs-dir", str(runs)]) == 0
    assert (tmp_path / "scancel.args").read_text().split() == ["4242_0"]


def test_progress_lines_in_a_log_file():
    log = io.StringIO()  # not a terminal: plain lines instead of a bar
    bar = Progress(10, "dql:train", every_s=0, stream=log)
    bar.update(5, {"critic_loss": 0.123456})
    bar.note("[dql:train] evaluation at step 5: normalized score 1.0 ± 0.0 over 5 episodes")
    bar.close()
    first, second = log.getvalue().splitlines()
    assert first.startswith("[dql:train] step 5/10 (50%)") and "steps/s ETA " in first
    assert first.endswith("critic_loss=0.123")
    assert second.startswith("[dql:train] evaluation at step 5")


def test_train_log_has_step_and_evaluation_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OFFDIFF_PROGRESS_S", "0")
    assert main(["train", "--algo", "dql", "--dataset", "toy:four_corners", "--steps", "20", "--eval-every", "10",
                 "--eval-episodes", "5", "--eval-envs", "5", "--log-every", "10", "--device", "cpu",
                 "--set", "hidden=32", "--runs-dir", str(tmp_path), "--log", "none"]) == 0
    err = capsys.readouterr().err
    assert "[dql:main] step 20/20 (100%)" in err and "critic_loss=" in err
    assert "[dql:main] evaluation at step 10: normalized score" in err


@pytest.mark.slow
def test_data_collect_logs_its_progress(capsys, monkeypatch):
    monkeypatch.setenv("OFFDIFF_PROGRESS_S", "0")
    sac = [f"--set={k}={v}" for k, v in (("hidden", 32), ("batch_size", 64), ("lr", 1e-3), ("learning_starts", 100),
                                          ("snapshots", 4), ("eval_episodes", 5))]  # tests/test_collect.py's tiny SAC
    assert main(["data", "collect", "InvertedDoublePendulum-v5", "--kinds", "random", "--transitions", "40",
                 "--budget", "800", *sac]) == 0
    err = capsys.readouterr().err
    assert "[SAC InvertedDoublePendulum-v5] step 800/800 (100%)" in err and "ETA" in err and "eval_return=" in err


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _sigint_as(disposition: signal.Handlers = signal.SIG_DFL) -> None:
    signal.signal(signal.SIGINT, disposition)


@pytest.mark.slow
@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["foreground", "started-with-sigint-ignored"])
def test_cancel_stops_a_local_grid_and_its_jobs(tmp_path, capsys, sigint):
    """Also for a submitter that inherited SIGINT ignored, as `nohup offdiff grid submit ... &` from a shell does."""
    grid = tmp_path / "long.yaml"
    grid.write_text("name: long\ndatasets: [toy:four_corners]\nseeds: [0, 1]\n"
                    "algorithms: [{name: dql, algo: dql, overrides: {hidden: 16}}]\n"
                    "budget: {steps: 1000000}\n"
                    "protocol: {eval_every: 1000000, eval_episodes: 5, eval_envs: 5, log_every: 20}\n"
                    "compile: false\nlog: []\n")
    profile = tmp_path / "local.yaml"
    profile.write_text("executor: local\ncpus: 1\narray_limit: 1\n")
    runs = tmp_path / "runs"
    submitter = subprocess.Popen([sys.executable, "-m", "offdiff.cli", "grid", "submit", str(grid), "--profile",
                                  str(profile), "--runs-dir", str(runs)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, preexec_fn=lambda: _sigint_as(sigint))
    try:
        for _ in range(120):  # until the first run has logged a step
            view = json.loads(_status(capsys, grid, runs, "--json"))
            if view["counts"]["running"] and any(r["step"] for r in view["runs"]):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the local grid did not start")
        assert main(["grid", "cancel", str(grid), "--runs-dir", str(runs)]) == 0
        assert "cancelled 1 job(s)" in capsys.readouterr().out
        assert submitter.wait(timeout=60) != 0  # the submitter stopped: the second run never starts
        for _ in range(60):
            if not _processes_mentioning(str(runs)):
                break
            time.sleep(0.5)
        assert not _processes_mentioning(str(runs)), "a job or its worker is still running"
        view = json.loads(_status(capsys, grid, runs, "--json"))
        assert (view["counts"]["failed"], view["counts"]["not submitted"]) == (1, 1), view["counts"]
    finally:
        submitter.kill()
