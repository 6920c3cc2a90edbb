"""The command line: end to end on MuJoCo data (Minari and D4RL HDF5), and one-line errors for bad input."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from offdiff.cli import main
from offdiff.io import read_jsonl

QUICK = ["--steps", "200", "--eval-episodes", "2", "--eval-envs", "2", "--device", "cpu", "--quiet",
         "--set", "hidden=32", "--set", "eval_candidates=8"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _hopper_hdf5(path, *, n=300, obs_dim=11, act_dim=3, action_scale=1.0, nan_at=None):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    actions = (action_scale * rng.uniform(-1, 1, size=(n, act_dim))).astype(np.float32)
    rewards = rng.normal(size=n).astype(np.float32)
    if nan_at is not None:
        rewards[nan_at] = np.nan
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    terminals[99], timeouts[199] = True, True
    with h5py.File(path, "w") as f:
        for key, value in dict(observations=obs, actions=actions, rewards=rewards, terminals=terminals,
                               timeouts=timeouts, next_observations=obs + 0.01).items():
            f.create_dataset(key, data=value)
    return path


def test_train_on_tiny_minari_dataset_evaluates_in_mujoco(tmp_path, capsys, tiny_hopper_minari):
    code, out, err = _run(capsys, "train", "--algo", "dql", "--dataset", tiny_hopper_minari, "--task", "none",
                          "--ref-scores", "d4rl", "--runs-dir", str(tmp_path), *QUICK)
    assert code == 0, err
    assert "normalized score (last evaluation, 2 episodes)" in out
    (evals_path,) = tmp_path.glob("**/evals.jsonl")
    (row,) = read_jsonl(evals_path)
    assert row["step"] == 200 and len(row["returns"]) == 2
    ref_min, ref_max = -20.272305, 3234.3  # D4RL's hopper reference scores
    expected = [100 * (r - ref_min) / (ref_max - ref_min) for r in row["returns"]]
    assert row["normalized"] == pytest.approx(expected)
    assert all(length > 1 for length in row["lengths"]), "episodes ran in the MuJoCo env"


def test_algos_lists_dql(capsys):
    code, out, _ = _run(capsys, "algos")
    assert code == 0 and out.split()[0] == "dql" and "offdiff" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algo", "nope", "--dataset", "toy:four_corners"], "unknown algorithm 'nope'"),
        (["--algo", "dql", "--dataset", "s3:bucket/x"], "minari:"),
        (["--algo", "dql", "--dataset", "toy:nine_corners"], "four_corners"),
        (["--algo", "dql", "--dataset", "minari:nowhere/hopper/medium-v0"], "offdiff data fetch"),
        (["--algo", "dql", "--dataset", "toy:four_corners", "--set", "etaa=1"], "unknown config key"),
        (["--algo", "dql", "--dataset", "toy:four_corners", "--set", "eta=big"], "eta expects a number"),
        (["--algo", "dql", "--dataset", "toy:four_corners", "--set", "lr_schedule=linear"], "lr_schedule"),
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    code, _, err = _run(capsys, "train", *argv, "--runs-dir", str(tmp_path), "--quiet")
    assert code == 2
    assert err.startswith("offdiff: error:") and message in err
    assert err.count("\n") == 1, "one line, no traceback"
    assert not any(tmp_path.iterdir()), "nothing was written"


@pytest.mark.parametrize(
    ("kwargs", "eval_env", "message"),
    [
        ({"nan_at": 17}, "Hopper-v5", "rewards"),
        ({"action_scale": 1.5}, "Hopper-v5", "bound"),
        ({}, "Walker2d-v5", "17"),
        ({}, None, "eval"),
    ],
)
def test_bad_datasets_are_one_line_errors(tmp_path, capsys, kwargs, eval_env, message):
    # a D4RL file name has a default eval env (-v4); any other file needs one
    path = _hopper_hdf5(tmp_path / ("hopper-medium-v2.hdf5" if eval_env else "my-hopper.hdf5"), **kwargs)
    extra = ["--eval-env", eval_env] if eval_env else []
    code, _, err = _run(capsys, "train", "--algo", "dql", "--dataset", f"hdf5:{path}", *extra,
                        "--runs-dir", str(tmp_path / "runs"), "--quiet")
    assert code == 2 and err.startswith("offdiff: error:") and message in err, err
    assert err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_corrupt_checkpoint_via_cli(tmp_path, capsys):
    argv = ["train", "--algo", "dql", "--dataset", "toy:four_corners", "--runs-dir", str(tmp_path), *QUICK]
    assert _run(capsys, *argv)[0] == 0
    (ckpt,) = tmp_path.glob("**/checkpoint.pt")
    (ckpt.parent / "DONE").unlink()
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated, as by a full disk
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "corrupt or truncated" in err and err.count("\n") == 1
    assert ckpt.stat().st_size == 1000, "the damaged file is left for the user, not silently replaced"


def test_data_list_and_info(capsys, tiny_hopper_minari):
    code, out, _ = _run(capsys, "data", "list")
    assert code == 0 and "test/hopper/tiny-v0" in out
    code, out, _ = _run(capsys, "data", "info", tiny_hopper_minari)
    assert code == 0 and "Hopper-v5" in out and "not D4RL's data" in out


def test_data_fetch_without_network_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    code, _, err = _run(capsys, "data", "fetch", "mujoco/hopper/medium-v0", "--timeout", "60")
    assert code == 2 and err.startswith("offdiff: error:") and "mujoco/hopper/medium-v0" in err
    assert "cannot reach 127.0.0.1:9" in err and time.monotonic() - start < 10, "no network fails in seconds"
