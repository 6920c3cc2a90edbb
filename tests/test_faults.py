"""Fault injection: kills at chosen and random points, a full disk and a read-only folder (by patching offdiff's
write layer, so it runs unprivileged), plugin name collisions and broken entry points, damaged run files, and
out-of-range values through the CLI and a grid. Every case asserts one clear line, a non-zero exit, and that
finished runs and results folders are unchanged or consistent.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import offdiff.io as write_layer
from offdiff.analysis.collect import collect
from offdiff.analysis.report import aggregate
from offdiff.cli import main
from offdiff.harness.grid import expand, load_grid
from offdiff.harness.record import JobEntry, Record, harness_dir, write_outcome
from offdiff.harness.status import run_states
from offdiff.io import read_jsonl
from offdiff.records import RunDir
from offdiff.train import runner
from offdiff.train.runner import TrainRequest, plan, train
from offdiff_dql import DiffusionQL

REPO = Path(__file__).resolve().parents[1]
TINY = {"hidden": "16", "batch_size": "32", "eval_candidates": "4", "n_timesteps": "3"}
PROTOCOL = {"eval_every": 10, "eval_episodes": 4, "eval_envs": 4, "log_every": 5, "checkpoint_every": 10}
STEPS = 30
TRAIN = ["train", "--algo", "dql", "--dataset", "toy:four_corners", "--steps", str(STEPS), "--device", "cpu",
         "--quiet", *(f"--{k.replace('_', '-')}={v}" for k, v in PROTOCOL.items()),
         *(f"--set={k}={v}" for k, v in TINY.items())]
GRID = """\
name: faults
datasets: [toy:four_corners]
seeds: [0]
algorithms:
  - {name: dql, algo: dql, overrides: {hidden: 16, batch_size: 32, eval_candidates: 4, n_timesteps: 3}}
budget: {steps: 30}
protocol: {eval_every: 10, eval_episodes: 4, eval_envs: 4, log_every: 5, checkpoint_every: 10}
"""
LOCAL = "executor: local\ngpus: 0\ncpus: 1\ntime_min: 30\narray_limit: 1\nruns_per_job: 2\n"


class Killed(BaseException):
    """What a SIGKILL does to the Python code: nothing after the point runs (not caught by `except Exception`)."""


def request(tmp_path: Path, seed: int = 0, **changes) -> TrainRequest:
    fields = dict(algo="dql", source="toy:four_corners", seed=seed, steps=STEPS, device="cpu", overrides=TINY,
                  protocol=PROTOCOL, runs_root=tmp_path / "runs")
    return TrainRequest(**{**fields, **changes})


def one_line_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """Run the CLI; it must fail with exactly one `offdiff: error:` line and no traceback. Returns that line."""
    capsys.readouterr()  # what earlier calls of the test printed
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("offdiff: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) by relative path: its sha256."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_consistent(run: RunDir) -> None:
    """Logs strictly ordered and without repeats, `aggregate` collects the run, and a finished run has them all."""
    for path in (run.metrics, run.evals):
        keys = [(r["stage_index"], r["step"]) for r in read_jsonl(path) if "event" not in r]
        assert keys == sorted(set(keys)), f"{path.name}: repeated or out-of-order rows {keys}"
        assert len(path.read_text().splitlines()) == len(read_jsonl(path)), f"{path.name}: a broken line"
    collect([run.path])  # raises BadRun on an inconsistent folder
    if run.is_done():
        assert [r["step"] for r in read_jsonl(run.evals)] == list(range(10, STEPS + 1, 10))
        assert [r["step"] for r in read_jsonl(run.metrics)] == list(range(5, STEPS + 1, 5))


def kill_at(monkeypatch: pytest.MonkeyPatch, target: object, name: str, when) -> None:
    """Make `target.name` raise Killed on the call for which `when(count, *args)` is true (count from 1)."""
    real, calls = getattr(target, name), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if when(calls[0], *args):
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


def finished_run(tmp_path: Path) -> tuple[RunDir, dict[str, str]]:
    """A finished run (seed 7) next to the ones a test breaks, and its snapshot: it must never change."""
    train(request(tmp_path, seed=7), progress=False)
    run = plan(request(tmp_path, seed=7)).run_dir
    return run, snapshot(run.path)


def os_error(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


# -- 1. kills: a restart leaves the logs consistent with the state it restarts from ----------------------------

KILLS = {
    "before the first checkpoint": (runner.Trainer, "_save_checkpoint", lambda n, *a: n == 1),
    "mid-evaluation": (DiffusionQL, "act", lambda n, *a: n == 2),  # inside the second evaluation's episodes
    "between a checkpoint and its log rows": (RunDir, "append", lambda n, self, path, row: row["step"] == 15),
}


@pytest.mark.parametrize("point", list(KILLS))
def test_kill_then_restart_leaves_consistent_logs(tmp_path, monkeypatch, point):
    done, before = finished_run(tmp_path)
    with monkeypatch.context() as patch:
        kill_at(patch, *KILLS[point])
        with pytest.raises(Killed):
            train(request(tmp_path), progress=False)
    run = plan(request(tmp_path)).run_dir
    assert not run.is_done()
    train(request(tmp_path), progress=False)
    assert_consistent(run)
    assert snapshot(done.path) == before


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_at_a_random_write_then_restart(tmp_path, monkeypatch, seed):
    """A kill inside a random write (half of the bytes written, as a real kill can leave an appended line)."""
    point = random.Random(seed).randint(1, 16)  # a 30-step run makes 16 writes (logs, checkpoints, manifest, DONE)
    real, calls = write_layer._write, [0]

    def write(f, data):
        calls[0] += 1
        if calls[0] == point:
            real(f, data[: len(data) // 2])
            raise Killed
        real(f, data)

    with monkeypatch.context() as patch:
        patch.setattr(write_layer, "_write", write)
        with pytest.raises(Killed):
            train(request(tmp_path), progress=False)
    run = plan(request(tmp_path)).run_dir
    train(request(tmp_path), progress=False)
    assert_consistent(run)


def test_corrupt_checkpoint_moved_away_restarts_from_scratch(tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        kill_at(patch, runner.Trainer, "_save_checkpoint", lambda n, *a: n == 2)
        with pytest.raises(Killed):
            train(request(tmp_path), progress=False)
    run = plan(request(tmp_path)).run_dir
    run.checkpoint.write_bytes(run.checkpoint.read_bytes()[:500])
    assert "corrupt or truncated" in one_line_error(capsys, *TRAIN, "--runs-dir", tmp_path / "runs")
    run.checkpoint.rename(tmp_path / "damaged.pt")  # as the error advises
    assert main([*TRAIN, "--runs-dir", str(tmp_path / "runs")]) == 0
    assert_consistent(run)


@pytest.mark.slow
def test_sigkill_before_the_first_checkpoint_then_restart_rewinds(tmp_path, monkeypatch):
    """A real SIGKILL of `offdiff train` after its first log rows, before any checkpoint."""
    runs = tmp_path / "runs"
    argv = [*TRAIN, "--steps", "100000", "--checkpoint-every", "100000", "--no-compile", "--runs-dir", str(runs)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "offdiff.cli", *argv], env=env, stderr=subprocess.DEVNULL)
    try:
        while not any(read_jsonl(p) for p in runs.glob("**/evals.jsonl")) and proc.poll() is None:
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    (evals,) = runs.glob("**/evals.jsonl")
    assert read_jsonl(evals) and not (evals.parent / "checkpoint.pt").exists()
    restarted = request(tmp_path, steps=100000, protocol={**PROTOCOL, "checkpoint_every": 100000}, compile=False)
    kill_at(monkeypatch, runner.Trainer, "_run_stage", lambda n, *a: True)  # stop right after the restart's set-up
    with pytest.raises(Killed):
        train(restarted, progress=False)
    assert read_jsonl(evals) == [] and read_jsonl(evals.parent / "metrics.jsonl") == []


# -- 2. two packages registering one algorithm name; 7. entry points that do not load ----------------------------

@pytest.fixture
def other_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution `fakeplug` 1.0 registering `dql` (a clash), `broken_module` and `broken_class`."""
    site = tmp_path / "site"
    info = site / "fakeplug-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[offdiff.algorithms]\ndql = fakeplug_algos:Other\n"
                                           "broken_module = no_such_module_xyz:Algo\n"
                                           "broken_class = fakeplug_algos:NoSuchClass\n")
    (site / "fakeplug_algos.py").write_text("from offdiff_dql import DiffusionQL\n\n\n"
                                            "class Other(DiffusionQL):\n    name = 'dql'\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_algorithm_name_collision_is_an_error_naming_both_packages(tmp_path, capsys, other_package):
    for argv in (["algos"], [*TRAIN, "--runs-dir", tmp_path / "runs"]):
        err = one_line_error(capsys, *argv)
        assert "'dql'" in err and "offdiff 0.1.0" in err and "fakeplug 1.0" in err
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    assert "fakeplug" in one_line_error(capsys, "grid", "submit", grid, "--profile", tmp_path / "p.yaml",
                                        "--runs-dir", tmp_path / "runs", "--dry-run")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["broken_module", "broken_class"])
def test_entry_point_that_does_not_load_is_one_line(tmp_path, capsys, monkeypatch, other_package, name):
    entry = other_package / "fakeplug-1.0.dist-info" / "entry_points.txt"
    entry.write_text(entry.read_text().replace("dql = fakeplug_algos:Other\n", ""))
    argv = [a if a != "dql" else name for a in TRAIN]
    err = one_line_error(capsys, *argv, "--runs-dir", tmp_path / "runs")
    assert name in err and "fakeplug" in err and "does not load" in err


# -- 3. a full disk and a read-only folder -------------------------------------------------------------------------

def test_full_disk_while_training_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    done, before = finished_run(tmp_path)
    real, calls = write_layer._write, [0]

    def write(f, data):
        calls[0] += 1
        if calls[0] >= 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f, data)

    with monkeypatch.context() as patch:
        patch.setattr(write_layer, "_write", write)
        assert "No space left on device" in one_line_error(capsys, *TRAIN, "--runs-dir", tmp_path / "runs")
    run = plan(request(tmp_path)).run_dir
    assert not run.is_done() and snapshot(done.path) == before
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")], "no temp file left behind"
    assert main([*TRAIN, "--runs-dir", str(tmp_path / "runs")]) == 0
    assert_consistent(run)


def test_read_only_runs_folder_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(write_layer, "_make_dir", os_error(errno.EROFS))
    monkeypatch.setattr(write_layer, "_create", os_error(errno.EROFS))
    assert "Read-only file system" in one_line_error(capsys, *TRAIN, "--runs-dir", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("fault", ["full disk", "read-only"])
def test_grid_submit_on_a_full_disk_or_read_only_folder_submits_nothing(tmp_path, monkeypatch, capsys, fault):
    grid, profile = tmp_path / "grid.yaml", tmp_path / "local.yaml"
    grid.write_text(GRID.replace("seeds: [0]", "seeds: [0, 7]"))
    profile.write_text(LOCAL)
    done, before = finished_run(tmp_path)
    runs = tmp_path / "runs"
    if fault == "full disk":
        monkeypatch.setattr(write_layer, "_write", os_error(errno.ENOSPC))
    else:
        monkeypatch.setattr(write_layer, "_make_dir", os_error(errno.EROFS))
        monkeypatch.setattr(write_layer, "_create", os_error(errno.EROFS))
    err = one_line_error(capsys, "grid", "submit", grid, "--profile", profile, "--runs-dir", runs)
    assert ("No space left" if fault == "full disk" else "Read-only") in err
    assert not list((runs / "faults").glob("**/seed_*")), "no job was started"
    assert not list((runs / "faults").glob("**/outcomes/*")) and snapshot(done.path) == before


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["full disk", "read-only"])
def test_aggregate_on_a_full_disk_or_read_only_folder_leaves_the_results_folder_as_it_was(
        tmp_path, monkeypatch, capsys, fault):
    finished_run(tmp_path)
    out = tmp_path / "results"
    aggregate(out, [tmp_path / "runs"], reps=20)
    (out / "ABOUT.md").write_text("hand-written\n")
    before = snapshot(out)
    train(request(tmp_path, seed=3), progress=False)  # a new run: the next aggregate would change every file
    real, calls = write_layer._write, [0]

    def write(f, data):
        calls[0] += 1
        if calls[0] >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f, data)

    if fault == "full disk":
        monkeypatch.setattr(write_layer, "_write", write)
    else:
        monkeypatch.setattr(write_layer, "_make_dir", os_error(errno.EROFS))
    err = one_line_error(capsys, "aggregate", tmp_path / "runs", "--out", out, "--reps", "20")
    assert ("No space left" if fault == "full disk" else "Read-only") in err
    assert snapshot(out) == before, "all or nothing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "runs"], "no temp folder left beside it"
    monkeypatch.undo()
    assert main(["aggregate", str(tmp_path / "runs"), "--out", str(out), "--reps", "20"]) == 0
    after = snapshot(out)
    assert after["ABOUT.md"] == before["ABOUT.md"] and after["scores.csv"] != before["scores.csv"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["scores_csv_sha256"] == hashlib.sha256((out / "scores.csv").read_bytes()).hexdigest()


# -- 4. out-of-range values: one validation for the CLI and grids, before any folder exists -----------------------

@pytest.mark.parametrize("argv", [
    ["--steps", "0"], ["--steps", "-5"], ["--eval-every", "0"], ["--log-every", "0"], ["--checkpoint-every", "0"],
    ["--eval-episodes", "0"], ["--eval-envs", "-1"], ["--seed", "-1"], ["--set", "hidden=-1"], ["--set", "lr=-1"],
    ["--set", "batch_size=0"], ["--set", "eta=nan"], ["--set", "eta=inf"], ["--set", "tau=2"],
    ["--set", "discount=-0.1"], ["--set", "n_timesteps=0"],
])
def test_out_of_range_values_on_the_command_line(tmp_path, capsys, argv):
    err = one_line_error(capsys, *TRAIN, *argv, "--runs-dir", tmp_path / "runs")
    assert argv[1].split("=")[0].lstrip("-").replace("-", "_") in err.replace("-", "_")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("change", "line"), [
    ("hidden: 16,", "hidden: -1,"), ("batch_size: 32,", "batch_size: 0,"), ("n_timesteps: 3}", "n_timesteps: .nan}"),
    ("eval_episodes: 4,", "eval_episodes: 0,"), ("log_every: 5,", "log_every: -5,"),
])
def test_out_of_range_values_in_a_grid(tmp_path, capsys, change, line):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace(change, line))
    err = one_line_error(capsys, "grid", "submit", grid, "--profile", tmp_path / "p.yaml", "--dry-run",
                         "--runs-dir", tmp_path / "runs")
    assert line.split(":")[0] in err and err.count(f"{grid}:") == 1, "file:line once"
    assert not (tmp_path / "runs").exists()


def test_out_of_range_sweep_value_in_a_grid(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace("n_timesteps: 3}", "n_timesteps: 3}, sweep: {lr: [1.0e-3, -1.0]}"))
    err = one_line_error(capsys, "grid", "submit", grid, "--profile", tmp_path / "p.yaml", "--dry-run")
    assert "lr=-1.0 must be > 0" in err and err.count(f"{grid}:") == 1


# -- 7. damaged files, an unreachable SLURM controller, Ctrl-C ----------------------------------------------------

def test_corrupt_done_marker_is_one_line_and_not_done_for_grid_status(tmp_path, capsys):
    train(request(tmp_path), progress=False)
    plan(request(tmp_path)).run_dir.done_marker.write_text('{"run_dir": ')  # damaged
    assert "DONE marker" in one_line_error(capsys, *TRAIN, "--runs-dir", tmp_path / "runs")
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    (cell,) = expand(load_grid(grid), tmp_path / "runs")
    train(cell.planned.request, progress=False)
    cell.planned.run_dir.done_marker.write_bytes(b"\xff\xfe")
    code = main(["grid", "status", str(grid), "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0 and "0 done" in out and "1 failed" in out and "DONE marker" in out


def test_garbage_manifest_is_one_line(tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        kill_at(patch, runner.Trainer, "_save_checkpoint", lambda n, *a: n == 2)
        with pytest.raises(Killed):
            train(request(tmp_path), progress=False)
    run = plan(request(tmp_path)).run_dir
    run.manifest.write_text("garbage")
    before = snapshot(run.path)
    assert "manifest" in one_line_error(capsys, *TRAIN, "--runs-dir", tmp_path / "runs")
    assert snapshot(run.path) == before


def test_sbatch_without_a_reachable_controller_is_one_line(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (("srun", "exit 0"), ("sbatch", "echo 'sbatch: error: Batch job submission failed: Unable "
                                                         "to contact slurm controller (connect failure)' >&2; exit 1")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    grid, profile = tmp_path / "grid.yaml", tmp_path / "slurm.yaml"
    grid.write_text(GRID)
    profile.write_text("executor: slurm\npartition: gpu\ntime_min: 60\n")
    err = one_line_error(capsys, "grid", "submit", grid, "--profile", profile, "--runs-dir", tmp_path / "runs")
    assert "Unable to contact slurm controller" in err
    assert Record(harness_dir(tmp_path / "runs", "faults")).submissions[-1].jobs == [], "nothing recorded as queued"


@pytest.mark.slow
def test_ctrl_c_on_grid_submit_prints_one_line(tmp_path):
    grid, profile = tmp_path / "grid.yaml", tmp_path / "local.yaml"
    grid.write_text(GRID.replace("steps: 30}", "steps: 100000}") + "compile: false\n")
    profile.write_text(LOCAL)
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "offdiff.cli", "grid", "submit", str(grid), "--profile",
                             str(profile), "--runs-dir", str(runs)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while not any(read_jsonl(p) for p in runs.glob("faults/**/metrics.jsonl")) and proc.poll() is None:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert [line for line in err.splitlines() if line.strip()] == [
        "offdiff: interrupted; a run resumes from its last checkpoint when started again"]


# -- 8. smaller ---------------------------------------------------------------------------------------------------

def test_dataset_ids_are_quoted_in_not_found_errors(tmp_path, capsys):
    argv = [a if a != "toy:four_corners" else "minari:mujoco/hopper/medium-v0 " for a in TRAIN]
    assert "'mujoco/hopper/medium-v0 '" in one_line_error(capsys, *argv, "--runs-dir", tmp_path / "runs")


def test_grid_status_counts_runs_queued_inside_a_running_job_as_pending(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace("seeds: [0]", "seeds: [0, 1]"))
    runs = tmp_path / "runs"
    cells = expand(load_grid(grid), runs)
    folder = harness_dir(runs, "faults")
    record = Record(folder)
    job_id = str(os.getpid())  # a live process: a running local job
    submission = record.start("local", "local.yaml", folder / "logs" / "%j")
    submission.jobs.append(JobEntry(job_id, "train", [c.key for c in cells], []))
    record.save()
    write_outcome(folder, job_id, cells[0].key, "started")
    states = {s.cell.key: s.state for s in run_states(cells, folder)}
    assert states == {cells[0].key: "running", cells[1].key: "pending"}


def test_metrics_row_after_a_resume_records_how_many_steps_it_averages(tmp_path, monkeypatch):
    protocol = {**PROTOCOL, "log_every": 4, "checkpoint_every": 6}
    with monkeypatch.context() as patch:
        kill_at(patch, runner.Trainer, "_save_checkpoint", lambda n, *a: n == 2)  # killed at step 12, resumes at 6
        with pytest.raises(Killed):
            train(request(tmp_path, protocol=protocol), progress=False)
    train(request(tmp_path, protocol=protocol), progress=False)
    rows = {r["step"]: r for r in read_jsonl(plan(request(tmp_path, protocol=protocol)).run_dir.metrics)}
    assert rows[4]["steps_averaged"] == 4 and rows[8]["steps_averaged"] == 2 and rows[12]["steps_averaged"] == 4
