"""The papers' D4RL grids load and plan (with placeholder files in D4RL's layout), and name missing data."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from offdiff.cli import main
from offdiff.data import d4rl

ROOT = Path(__file__).resolve().parents[1]
DIMS = {"halfcheetah": (17, 6), "hopper": (11, 3), "walker2d": (17, 6)}


def _placeholder(path: Path, obs_dim: int, act_dim: int, n: int = 20) -> None:
    with h5py.File(path, "w") as f:
        for key, shape in (("observations", (n, obs_dim)), ("next_observations", (n, obs_dim)),
                           ("actions", (n, act_dim)), ("rewards", (n,))):
            f.create_dataset(key, data=np.zeros(shape, np.float32))
        f.create_dataset("terminals", data=np.zeros(n, bool))
        f.create_dataset("timeouts", data=np.arange(n) == n - 1)


def _submit(capsys: pytest.CaptureFixture, grid: str, tmp_path: Path) -> tuple[int, str, str]:
    code = main(["grid", "submit", str(ROOT / "benchmarks/grids" / grid), "--profile",
                 str(ROOT / "slurm/profiles/example.yaml"), "--runs-dir", str(tmp_path / "runs"), "--dry-run"])
    out, err = capsys.readouterr()
    return code, out, err


def test_d4rl_grid_names_a_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(d4rl.STORE_VARIABLE, str(tmp_path / "empty"))
    code, _, err = _submit(capsys, "d4rl.yaml", tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "d4rl.yaml:" in err and "dataset 'd4rl:halfcheetah-medium-v2' is not in the local D4RL store" in err
    assert "offdiff data fetch d4rl:halfcheetah-medium-v2" in err


@pytest.mark.parametrize(("grid", "first"), [("d4rl-antmaze-kitchen.yaml", "D4RL/antmaze/umaze-v1"),
                                             ("d4rl-adroit.yaml", "D4RL/pen/human-v2")])
def test_minari_d4rl_grids_name_a_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture, grid: str,
                                                  first: str) -> None:
    code, _, err = _submit(capsys, grid, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"dataset '{first}' is not in the local Minari store" in err and f"offdiff data fetch {first}" in err


def test_d4rl_grid_plans_at_the_papers_budgets(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(d4rl.STORE_VARIABLE, str(tmp_path / "store"))
    (tmp_path / "store").mkdir()
    for name in d4rl.catalogue():
        _placeholder(d4rl.local_path(name), *DIMS[name.partition("-")[0]])
    code, out, err = _submit(capsys, "d4rl.yaml", tmp_path)
    assert code == 0, err
    assert re.search(r"\b135 runs\b", out), out
    # the papers' budgets, per run: Diffusion-QL 2M steps (2000 epochs), DTQL 50k pretraining + 1M, EDA 1M
    # behavior + 1.5M critic + 200k alignment; 9 tasks x 5 seeds each
    steps = re.search(r"for (\d+) training steps", out)
    assert steps is not None and int(steps.group(1)) == 45 * (2_000_000 + 1_050_000 + 2_700_000), out
    assert not (tmp_path / "runs").exists()
