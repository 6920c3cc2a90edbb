"""The paper path: D4RL data is recognised, gets its task's preset, D4RL's scores and the -v4 eval env, visibly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import write_d4rl_file

from offdiff.cli import main
from offdiff.data.sources import resolve
from offdiff.errors import OffdiffError

TINY_DTQL = ["--steps", "20", "--eval-episodes", "2", "--eval-envs", "2", "--device", "cpu", "--quiet",
             *(f"--set={k}={v}" for k, v in {"diffusion_hidden": 16, "policy_hidden": 16, "critic_hidden": 16,
                                              "time_dim": 4, "batch_size": 8, "eval_candidates": 4}.items())]


def _train(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_d4rl_file_name_gives_preset_v4_env_and_d4rl_scores(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The issue's check: `train --algo dtql --dataset hdf5:<dir>/hopper_medium-v2.hdf5`."""
    path = write_d4rl_file(tmp_path / "hopper_medium-v2.hdf5")
    code, out, err = _train(capsys, "--algo", "dtql", "--dataset", f"hdf5:{path}", "--runs-dir", str(tmp_path / "r"),
                            *TINY_DTQL)
    assert code == 0, err
    assert "task hopper-medium (from D4RL's file name hopper_medium-v2.hdf5): preset hopper-medium sets" in out
    assert "alpha=5.0" in out and "lr=0.0001" in out
    assert "eval env Hopper-v4 (the closest gymnasium env to D4RL's mujoco-py envs (-v4))" in out
    assert "reference scores min -20.2723, max 3234.3 (D4RL infos.py" in out
    manifest = json.loads(next(tmp_path.glob("r/**/manifest.json")).read_text())
    assert manifest["task"]["preset"] == "hopper-medium" and manifest["task"]["keys"]["alpha"] == 5.0
    assert manifest["config"]["alpha"] == 5.0 and manifest["dataset"]["eval_env"] == "Hopper-v4"
    assert manifest["dataset"]["ref_scores"]["min"] == -20.272305


def test_file_attributes_name_the_task_and_the_reference_scores(tmp_path: Path) -> None:
    """The issue's file: a `dataset` attribute `hopper-v5-medium` and its own reference scores."""
    path = write_d4rl_file(tmp_path / "collected.hdf5",
                           attrs={"dataset": "hopper-v5-medium", "ref_min_score": -5.0, "ref_max_score": 3000.0})
    source = resolve(f"hdf5:{path}", "Hopper-v5")
    info = source.info()
    assert (info.task, info.is_d4rl) == ("hopper-medium", False)
    ref = source.ref_scores()
    assert (ref.min, ref.max) == (-5.0, 3000.0) and "metadata" in ref.source


def test_unmatched_task_is_an_error_with_the_closest_presets(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_d4rl_file(tmp_path / "hopper_expert-v2.hdf5")  # D4RL data, but no paper tuned hopper-expert
    code, _, err = _train(capsys, "--algo", "dtql", "--dataset", f"hdf5:{path}", "--runs-dir", str(tmp_path / "r"),
                          *TINY_DTQL)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no dtql preset for task 'hopper-expert'" in err and "hopper-medium-expert" in err
    assert "--task none" in err and not (tmp_path / "r").exists()
    code, _, err = _train(capsys, "--algo", "dtql", "--dataset", f"hdf5:{path}", "--task", "hopper-medum",
                          "--runs-dir", str(tmp_path / "r"), *TINY_DTQL)
    assert code == 2 and "unknown --task 'hopper-medum'" in err and "hopper-medium" in err
    code, out, err = _train(capsys, "--algo", "dtql", "--dataset", f"hdf5:{path}", "--task", "none",
                            "--runs-dir", str(tmp_path / "r"), *TINY_DTQL)
    assert code == 0, err
    assert "task hopper-expert (from D4RL's file name hopper_expert-v2.hdf5; --task none): no preset" in out


def test_task_override_applies_another_preset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_d4rl_file(tmp_path / "mine.hdf5")
    code, out, err = _train(capsys, "--algo", "dtql", "--dataset", f"hdf5:{path}", "--eval-env", "Hopper-v4",
                            "--task", "walker2d-medium", "--ref-scores", "0,100", "--runs-dir", str(tmp_path / "r"),
                            *TINY_DTQL)
    assert code == 0, err
    assert "task walker2d-medium (--task): preset walker2d-medium" in out
    assert "reference scores min 0, max 100 (--ref-scores 0,100)" in out


def test_other_hdf5_files_need_an_eval_env_and_reference_scores(tmp_path: Path) -> None:
    path = write_d4rl_file(tmp_path / "hopper-tiny-v2.hdf5")
    with pytest.raises(OffdiffError, match="needs an evaluation env: pass --eval-env"):
        resolve(f"hdf5:{path}")
    with pytest.raises(OffdiffError, match="not D4RL's data.*--ref-scores"):
        resolve(f"hdf5:{path}", "Hopper-v4").ref_scores()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"timeouts": None}, "lacks key.*timeouts"),
        ({"rewards": [1.0] * 5}, r"fields of different lengths \(.*rewards 5"),
    ],
)
def test_broken_d4rl_files_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture, override: dict,
                                               message: str) -> None:
    path = write_d4rl_file(tmp_path / "hopper_medium-v2.hdf5", **override)
    code, _, err = _train(capsys, "--algo", "dql", "--dataset", f"hdf5:{path}", "--runs-dir", str(tmp_path / "r"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err) and not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", ["1", "a,b", "7,3"])
def test_malformed_ref_scores_flag(tmp_path: Path, capsys: pytest.CaptureFixture, text: str) -> None:
    path = write_d4rl_file(tmp_path / "hopper_medium-v2.hdf5")
    code, _, err = _train(capsys, "--algo", "dql", "--dataset", f"hdf5:{path}", "--ref-scores", text,
                          "--runs-dir", str(tmp_path / "r"))
    assert code == 2 and "--ref-scores" in err and len(err.strip().splitlines()) == 1


def test_eda_domain_settings_reach_every_antmaze_and_kitchen_task() -> None:
    from offdiff_eda import EDA

    for task in ("antmaze-umaze", "antmaze-medium-diverse", "antmaze-large-play", "antmaze-large-diverse"):
        assert EDA.preset(task)["reward_transform"] == "iql_antmaze" and EDA.preset(task)["expectile"] == 0.9
    assert "beta" not in EDA.preset("antmaze-large-play") and EDA.preset("antmaze-umaze")["beta"] == 0.5
    for task in ("kitchen-complete", "kitchen-partial", "kitchen-mixed"):
        assert EDA.preset(task)["reward_transform"] == "none"
