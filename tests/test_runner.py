"""The stage runner end to end: run folder, evaluation log, DONE, kill-and-resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from offdiff.errors import OffdiffError
from offdiff.io import read_jsonl
from offdiff.runtime import derive_seed
from offdiff.train.runner import TrainRequest, plan, train

SMALL = {"hidden": "32", "batch_size": "64", "eval_candidates": "8"}


def _request(tmp_path: Path, **kw) -> TrainRequest:
    base = dict(algo="dql", source="toy:four_corners", seed=0, steps=60, overrides=SMALL,
                protocol={"eval_every": 30, "eval_episodes": 20, "eval_envs": 5, "log_every": 10},
                device="cpu", runs_root=tmp_path / "runs")
    base.update(kw)
    return TrainRequest(**base)


def test_run_folder_contents_and_done_skip(tmp_path):
    request = _request(tmp_path)
    summary = train(request, progress=False)
    run = plan(request).run_dir
    manifest = json.loads(run.manifest.read_text())
    assert manifest["config"]["hidden"] == 32 and manifest["config"]["steps"] == 60
    assert manifest["dataset"]["ref_scores"]["max"] == 5.0
    assert manifest["versions"]["torch"] == torch.__version__
    assert set(manifest["git"]) == {"commit", "dirty"}
    assert manifest["eval_seed"] == derive_seed(0, "eval") != 0
    evals = read_jsonl(run.evals)
    assert [e["step"] for e in evals] == [30, 60]
    assert all(len(e["returns"]) == 20 for e in evals)
    assert evals[0]["seeds"] == [manifest["eval_seed"] + i for i in range(20)]
    assert summary["final_normalized_score"] == pytest.approx(evals[-1]["normalized_mean"])
    assert summary["best_normalized_score_online_selection"] == max(e["normalized_mean"] for e in evals)
    metrics = read_jsonl(run.metrics)
    assert [m["step"] for m in metrics] == [10, 20, 30, 40, 50, 60]
    assert {"critic_loss", "bc_loss", "q_loss", "steps_per_s"} <= set(metrics[0])

    # A finished run is never rerun or overwritten.
    before = {p.name: p.stat().st_mtime_ns for p in run.path.iterdir()}
    assert train(request, progress=False) == json.loads(run.done_marker.read_text())
    assert before == {p.name: p.stat().st_mtime_ns for p in run.path.iterdir()}


def test_run_folder_name_is_stable_and_config_sensitive(tmp_path):
    a, b = plan(_request(tmp_path)), plan(_request(tmp_path))
    assert a.run_dir.path == b.run_dir.path
    assert "seed_0" in str(a.run_dir.path) and "toy-four_corners" in str(a.run_dir.path)
    c = plan(_request(tmp_path, overrides={**SMALL, "eta": "2.0"}))
    assert c.run_dir.path != a.run_dir.path


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "offdiff.cli", "train", "--algo", "dql", "--dataset", "toy:four_corners",
         "--runs-dir", str(tmp_path), "--device", "cpu", "--quiet", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    args = ["--steps", "600", "--checkpoint-every", "50", "--eval-every", "300", "--eval-episodes", "10",
            "--set", "hidden=32", "--set", "batch_size=64", "--set", "eval_candidates=8"]
    straight = _cli(tmp_path / "straight", *args)
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    killed = _cli(tmp_path / "killed", *args)
    ckpts = list((tmp_path / "killed").glob("**/checkpoint.pt"))
    deadline = time.time() + 120
    while not ckpts and time.time() < deadline:
        time.sleep(0.05)
        ckpts = list((tmp_path / "killed").glob("**/checkpoint.pt"))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    run_path = ckpts[0].parent
    assert not (run_path / "DONE").exists(), "the run finished before it could be killed"
    step_at_kill = torch.load(ckpts[0], weights_only=False)["position"][1]
    assert 0 < step_at_kill < 600

    resumed = _cli(tmp_path / "killed", *args)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()

    final = {name: torch.load(next((tmp_path / name).glob("**/checkpoint.pt")), weights_only=False)
             for name in ("straight", "killed")}
    for module, state in final["straight"]["algorithm"]["modules"].items():
        for key, value in state.items():
            assert torch.equal(value, final["killed"]["algorithm"]["modules"][module][key]), f"{module}.{key}"
    logs = {name: read_jsonl(next((tmp_path / name).glob("**/evals.jsonl"))) for name in ("straight", "killed")}
    assert logs["straight"] == logs["killed"]
    steps = [m["step"] for m in read_jsonl(run_path / "metrics.jsonl")]
    assert steps == sorted(set(steps)), "no duplicated log rows after the resume"


def test_corrupt_checkpoint_is_a_clear_error_and_kept(tmp_path):
    request = _request(tmp_path, protocol={"eval_every": 1000, "eval_episodes": 5, "checkpoint_every": 20})
    run = plan(request).run_dir
    run.path.mkdir(parents=True)
    run.checkpoint.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(OffdiffError, match="corrupt or truncated"):
        train(request, progress=False)
    assert run.checkpoint.read_bytes().startswith(b"PK\x03\x04 this is not"), "nothing is lost"


def test_second_process_on_the_same_run_is_refused(tmp_path):
    request = _request(tmp_path)
    run = plan(request).run_dir
    run.lock()
    try:
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys; from offdiff.records import RunDir\n"
             f"RunDir({str(run.path)!r}).lock()"],
            capture_output=True, text=True)
        assert probe.returncode != 0 and "in use by another process" in probe.stderr
    finally:
        run.unlock()
