"""A dataset's name does not identify its data: collected again (on another CPU, say) it differs. Runs record the
SHA-256 of their data's content, and resuming, reusing a cached stage or aggregating across two versions of one
name is a one-line error instead of a silent mix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_d4rl_file

from offdiff.cli import main
from offdiff.data.sources import resolve
from offdiff.data.transitions import Transitions

TINY_DTQL = ["--algo", "dtql", "--steps", "20", "--eval-episodes", "2", "--eval-envs", "2", "--device", "cpu",
             "--quiet", *(f"--set={k}={v}" for k, v in {"diffusion_hidden": 16, "policy_hidden": 16,
                                                         "critic_hidden": 16, "time_dim": 4, "batch_size": 8,
                                                         "eval_candidates": 4}.items())]


def _train(capsys: pytest.CaptureFixture, data: Path, runs: Path, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["train", "--dataset", f"hdf5:{data}", "--runs-dir", str(runs), *TINY_DTQL, *extra])
    return code, capsys.readouterr().err


def _one_line(code: int, err: str) -> str:
    assert code == 2 and err.startswith("offdiff: error:") and err.count("\n") == 1, err
    return err


def test_the_digest_changes_with_any_value_or_shape_and_only_then():
    rng = np.random.default_rng(0)
    n = 6
    fields = dict(observations=rng.normal(size=(n, 4)), actions=rng.uniform(-1, 1, (n, 2)), rewards=rng.normal(size=n),
                  next_observations=rng.normal(size=(n, 4)), terminals=np.zeros(n, bool), timeouts=np.eye(n)[-1] > 0)
    first = Transitions(**fields)
    assert Transitions(**{k: v.copy() for k, v in fields.items()}).content_sha256() == first.content_sha256()
    rewards = fields["rewards"].copy()
    rewards[3] += 1e-3
    assert first.replace(rewards=rewards.astype(np.float32)).content_sha256() != first.content_sha256()
    flat = first.replace(observations=first.observations.reshape(n * 2, 2))  # same bytes, other shape
    assert flat.content_sha256() != first.content_sha256()


def test_a_run_records_its_data_and_does_not_resume_on_other_data_of_the_same_name(tmp_path, capsys):
    data, runs = write_d4rl_file(tmp_path / "hopper_medium-v2.hdf5"), tmp_path / "runs"
    assert _train(capsys, data, runs)[0] == 0
    manifest_path = next(runs.glob("train/dtql/**/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["dataset"]["content_sha256"] == resolve(f"hdf5:{data}", "Hopper-v4").load().content_sha256()
    run = manifest_path.parent
    (run / "DONE").unlink()  # unfinished again: the next `train` resumes it from its last checkpoint
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    write_d4rl_file(data, seed=1)  # the same file name, other data (the same episode lengths)
    err = _one_line(*_train(capsys, data, runs))
    assert f"run {run} was trained on other data under the name hopper_medium-v2" in err
    assert "move the run folder away, or train into another --runs-dir" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing touched

    write_d4rl_file(data, seed=0)  # the run's own data again: it resumes and finishes
    assert _train(capsys, data, runs)[0] == 0 and (run / "DONE").exists()
    assert main(["aggregate", str(runs), "--out", str(tmp_path / "results")]) == 0
    provenance = json.loads((tmp_path / "results" / "provenance.json").read_text())
    assert provenance["data_sha256"] == {"hopper_medium-v2": manifest["dataset"]["content_sha256"]}


def test_a_cached_stage_trained_on_other_data_is_not_reused(tmp_path, capsys):
    data, runs = write_d4rl_file(tmp_path / "hopper_medium-v2.hdf5"), tmp_path / "runs"
    assert _train(capsys, data, runs)[0] == 0
    (cached,) = runs.glob("_cache/dtql/pretrain/*.pt")
    for manifest in runs.glob("train/dtql/**/manifest.json"):  # the run folder away; the cached pretraining stays
        for path in manifest.parent.iterdir():
            if path.is_file():
                path.unlink()
    write_d4rl_file(data, seed=1)  # same name and sizes, so the same cache key; other data
    err = _one_line(*_train(capsys, data, runs))
    assert f"cached pretrain artifact {cached} was trained on other data under the name hopper_medium-v2" in err
    assert "delete it to train the stage again" in err
    cached.unlink()
    assert _train(capsys, data, runs)[0] == 0


def test_aggregate_refuses_runs_of_one_name_trained_on_different_data(tmp_path, capsys):
    data, runs = write_d4rl_file(tmp_path / "hopper_medium-v2.hdf5"), tmp_path / "runs"
    assert _train(capsys, data, runs, "--seed", "0")[0] == 0
    write_d4rl_file(data, seed=1)
    assert _train(capsys, data, runs, "--seed", "1")[0] == 0
    capsys.readouterr()
    code = main(["aggregate", str(runs), "--out", str(tmp_path / "results")])
    err = _one_line(code, capsys.readouterr().err)
    assert "the runs of hopper_medium-v2 were trained on 2 different datasets under that name" in err
    assert "1 run(s), e.g." in err and "aggregate each set on its own" in err
    assert not (tmp_path / "results").exists()
