"""`prepare`: transforms applied once, recorded, and the same at evaluation."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_d4rl_file

from offdiff.data.pipeline import prepare
from offdiff.data.sources import resolve
from offdiff.errors import OffdiffError


def test_prepare_minari(tiny_hopper_minari: str) -> None:
    data = prepare(
        tiny_hopper_minari, eval_env=None, obs_transform="standardize", reward_transform="iql_locomotion",
        device="cpu", ref_scores="d4rl",
    )
    raw = resolve(tiny_hopper_minari).load()
    assert len(data.buffer) == len(raw) and data.info.task == "hopper-tiny"
    scale = data.transforms["reward"]["params"]["scale"]
    torch.testing.assert_close(data.buffer.rewards, torch.as_tensor(raw.rewards * scale))
    obs = data.buffer.obs.numpy()
    np.testing.assert_allclose(obs.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(data.buffer.next_obs.numpy(), data.obs_normalizer.normalize_np(raw.next_observations))
    torch.testing.assert_close(data.buffer.not_done, torch.as_tensor(~raw.terminals).float())
    json.dumps(data.transforms)
    json.dumps(data.info.metadata)
    assert data.ref.max == 3234.3
    env = pickle.loads(pickle.dumps(data.make_env))()
    assert env.spec.id == "Hopper-v5"


def test_prepare_toy_scales_actions() -> None:
    data = prepare("toy:grid25_far", obs_transform="standardize", reward_transform="none")
    assert data.buffer.actions.abs().max() <= 1.0
    assert data.action_scaler.to_env(np.array([[1.0, -1.0]])).tolist() == [[12.0, -12.0]]
    assert torch.isfinite(data.buffer.obs).all() and not data.buffer.obs.any()
    assert data.transforms["action"] == {"low": [-12.0, -12.0], "high": [12.0, 12.0]}


def test_prepare_rejects_out_of_bounds_actions(tmp_path: Path) -> None:
    actions = np.zeros((200, 3), np.float32)
    actions[42, 1] = 1.5
    path = write_d4rl_file(tmp_path / "hopper-oob-v2.hdf5", actions=actions)
    with pytest.raises(OffdiffError, match=r"hopper-oob-v2.*actions leave.*row 42"):
        prepare(f"hdf5:{path}", eval_env="Hopper-v5", obs_transform="none", reward_transform="none",
                ref_scores="0,1")


def test_prepare_fails_early_without_reference_scores(tmp_path: Path) -> None:
    path = write_d4rl_file(tmp_path / "mystery.hdf5")
    with pytest.raises(OffdiffError, match=r"no reference scores for hdf5:.*mystery.hdf5: it is not D4RL's data"):
        prepare(f"hdf5:{path}", eval_env="Hopper-v5", obs_transform="none", reward_transform="none")


def test_prepare_checks_transform_names_first() -> None:
    with pytest.raises(OffdiffError, match="unknown obs_transform 'zscore'"):
        prepare("minari:not/here-v0", obs_transform="zscore", reward_transform="none")
