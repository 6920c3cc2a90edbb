"""Experiment tracking: TensorBoard event files written live and by `offdiff export`, read back with TensorBoard's
own event reader and compared with the JSONL logs (the source of truth); W&B in offline mode where installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from offdiff.cli import main
from offdiff.io import read_jsonl
from offdiff.train.runner import TrainRequest, plan, train

QUICK = ["--steps", "40", "--eval-every", "20", "--eval-episodes", "5", "--eval-envs", "5", "--log-every", "10",
         "--device", "cpu", "--quiet", "--set", "hidden=32", "--set", "batch_size=32"]


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _expected(run: Path) -> dict[str, list[tuple[int, float]]]:
    """What the JSONL logs say, at global steps (stage offsets from the manifest)."""
    import json

    steps = [s["steps"] for s in json.loads((run / "manifest.json").read_text())["stages"]]
    offset = [sum(steps[:i]) for i in range(len(steps))]
    tags: dict[str, list[tuple[int, float]]] = {}
    for row in read_jsonl(run / "metrics.jsonl"):
        for key, value in row.items():
            if key not in ("stage", "stage_index", "step", "event", "artifact", "steps_averaged"):
                tags.setdefault(f"train/{row['stage']}/{key}", []).append((offset[row["stage_index"]] + row["step"],
                                                                           value))
    for row in read_jsonl(run / "evals.jsonl"):
        step = offset[row["stage_index"]] + row["step"]
        for tag, key in (("eval/normalized_score", "normalized_mean"), ("eval/normalized_std", "normalized_std"),
                         ("eval/return", "mean_return")):
            tags.setdefault(tag, []).append((step, row[key]))
    return {tag: sorted(values) for tag, values in tags.items()}


def _assert_mirrors(logdir: Path, run: Path) -> None:
    got, want = _scalars(logdir), _expected(run)
    assert set(got) == set(want)
    for tag, values in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in values], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in values], rel=1e-6), tag


def test_train_logs_tensorboard_live_and_export_replays_it(tmp_path, capsys):
    assert main(["train", "--algo", "dql", "--dataset", "toy:four_corners", "--runs-dir", str(tmp_path / "runs"),
                 *QUICK]) == 0
    (run,) = (tmp_path / "runs").glob("train/dql/*/*/seed_0")
    _assert_mirrors(run / "tensorboard", run)

    out = tmp_path / "tb"
    for _ in range(2):  # exporting again rewrites, it does not add a second copy of each event
        assert main(["export", str(tmp_path / "runs"), "--to", "tensorboard", "--out", str(out)]) == 0
    assert "1 runs written" in capsys.readouterr().out
    (exported,) = out.glob("train/dql/*/*/seed_0")
    assert len(list(exported.iterdir())) == 1
    _assert_mirrors(exported, run)


def test_resumed_run_rewrites_its_event_files_without_duplicates(tmp_path):
    # DTQL's first stage is cacheable: a grid's cache phase stops after it, and the run continues later.
    request = TrainRequest(algo="dtql", source="toy:four_corners", steps=20, device="cpu", runs_root=tmp_path,
                           overrides={"diffusion_hidden": 16, "policy_hidden": 16, "critic_hidden": 16,
                                      "batch_size": 32, "eval_candidates": 4},
                           protocol={"eval_every": 10, "eval_episodes": 5, "eval_envs": 5, "log_every": 5})
    train(request, progress=False, stop_after_cacheable=True)
    run = plan(request).run_dir.path
    first = _scalars(run / "tensorboard")
    assert first and all(tag.startswith("train/pretrain") or tag.startswith("eval/") for tag in first)
    train(request, progress=False)
    _assert_mirrors(run / "tensorboard", run)
    steps = {tag: [s for s, _ in v] for tag, v in _scalars(run / "tensorboard").items()}
    later = [tag for tag in steps if tag.startswith("train/") and not tag.startswith("train/pretrain")]
    assert later and all(min(steps[tag]) > 20 for tag in later), "the second stage counts after the first"


def test_log_none_writes_no_event_files(tmp_path, capsys):
    assert main(["train", "--algo", "dql", "--dataset", "toy:four_corners", "--runs-dir", str(tmp_path), *QUICK,
                 "--log", "none"]) == 0
    (run,) = tmp_path.glob("train/dql/*/*/seed_0")
    assert not (run / "tensorboard").exists()
    assert main(["train", "--algo", "dql", "--dataset", "toy:four_corners", "--log", "tensorbored"]) == 2
    assert "offdiff: error: --log 'tensorbored'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_without_the_extra_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--algo", "dql", "--dataset", "toy:four_corners", "--runs-dir", str(tmp_path), *QUICK,
                 "--log", "wandb"]) == 2
    assert "pip install 'offdiff[wandb]'" in capsys.readouterr().err


def test_wandb_offline_live_and_export(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb", reason="the optional extra offdiff[wandb] is not installed")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is offdiff's default
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(["train", "--algo", "dql", "--dataset", "toy:four_corners", "--runs-dir", str(tmp_path / "runs"),
                 *QUICK, "--log", "tensorboard,wandb"]) == 0
    (run,) = (tmp_path / "runs").glob("train/dql/*/*/seed_0")
    assert list((run / "wandb").glob("offline-run-*"))
    assert main(["export", str(run), "--to", "wandb", "--out", str(tmp_path / "w")]) == 0
    assert list((tmp_path / "w" / "wandb").glob("offline-run-*"))
    assert "wandb sync" in capsys.readouterr().out
