"""Reward transforms, observation normalization and action scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from offdiff.data.transforms import ActionScaler, ObsNormalizer, apply_reward_transform, describe_reward_transform
from offdiff.data.transitions import Transitions
from offdiff.errors import OffdiffError


def _data() -> Transitions:
    rewards = np.array([1.0, 2.0, 3.0, 0.0, 0.5, 4.0])
    obs = np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0], [6.0, 5.0], [8.0, 5.0], [10.0, 5.0]])
    terminals = np.array([0, 0, 1, 0, 0, 0])
    timeouts = np.array([0, 0, 0, 0, 1, 0])
    return Transitions(obs, np.zeros((6, 2)), rewards, obs + 1, terminals, timeouts)


def test_reward_transforms_arithmetic() -> None:
    t = _data()
    r = t.rewards.astype(np.float64)
    expected = {
        "none": r,
        "iql_antmaze": r - 1,
        "cql_antmaze": 4 * (r - 0.5),
        "normalize": (r - r.mean()) / r.std(),
        "iql_locomotion": r * 1000 / (6.0 - 0.5),  # episode returns 6, 0.5, 4
    }
    for name, want in expected.items():
        out, params = apply_reward_transform(name, t)
        np.testing.assert_allclose(out.rewards, want, rtol=1e-5, err_msg=name)
        np.testing.assert_array_equal(out.observations, t.observations)
    assert apply_reward_transform("iql_locomotion", t)[1]["scale"] == pytest.approx(1000 / 5.5)
    assert apply_reward_transform("normalize", t)[1]["mean"] == pytest.approx(r.mean())


def test_a_data_dependent_reward_scale_is_described() -> None:
    """iql_locomotion's scale comes from the data's return range (here 0.5 to 6): a run prints it, and the mean."""
    _, params = apply_reward_transform("iql_locomotion", _data())
    assert params["mean_reward"] == pytest.approx(10.5 / 6 * 1000 / 5.5)
    line = describe_reward_transform("iql_locomotion", params)
    assert line == ("reward transform iql_locomotion: rewards x 181.8 (1000 / the range of episode returns, 0.5 to 6); "
                    "mean reward per step now 318.2")
    assert describe_reward_transform("none", apply_reward_transform("none", _data())[1]) is None


def test_unknown_reward_transform_lists_names() -> None:
    with pytest.raises(OffdiffError, match="iql_antmaze.*iql_locomotion"):
        apply_reward_transform("scale", _data())


def test_obs_standardize() -> None:
    t = _data()
    norm = ObsNormalizer.from_name("standardize", t)
    np.testing.assert_allclose(norm.mean, [5.0, 5.0])
    np.testing.assert_allclose(norm.std, [np.std([0, 2, 4, 6, 8, 10]) + 1e-3, 1e-3], rtol=1e-6)
    out = norm.normalize_np(t.observations)
    assert np.isfinite(out).all() and out.dtype == np.float32 and not out[:, 1].any()  # constant column
    np.testing.assert_allclose(norm.normalize_torch(torch.as_tensor(t.observations)).numpy(), out)
    again = ObsNormalizer.from_state(norm.state())
    np.testing.assert_array_equal(again.normalize_np(t.observations), out)
    none = ObsNormalizer.from_name("none", t)
    np.testing.assert_array_equal(none.normalize_np(t.observations), t.observations)
    with pytest.raises(OffdiffError, match="standardize"):
        ObsNormalizer.from_name("minmax", t)


def test_action_scaler_round_trip_numpy_and_torch() -> None:
    scaler = ActionScaler([0.0, -2.0], [4.0, 2.0])
    env_actions = np.array([[0.0, -2.0], [4.0, 2.0], [1.0, 0.0]], dtype=np.float32)
    policy = scaler.to_policy(env_actions)
    np.testing.assert_allclose(policy, [[-1, -1], [1, 1], [-0.5, 0]])
    np.testing.assert_allclose(scaler.to_env(policy), env_actions)
    np.testing.assert_allclose(scaler.to_env(torch.as_tensor(policy)).numpy(), env_actions)
    np.testing.assert_allclose(scaler.to_policy(torch.as_tensor(env_actions)).numpy(), policy)
    np.testing.assert_allclose(scaler.to_env(np.array([[3.0, -3.0]])), [[4.0, -2.0]])  # clipped
    identity = ActionScaler([-1.0, -1.0], [1.0, 1.0])
    assert identity.identity and identity.to_policy(env_actions) is env_actions


def test_dataset_actions_out_of_bounds() -> None:
    scaler = ActionScaler([-1.0, -1.0], [1.0, 1.0])
    slightly = np.array([[1.00005, 0.0], [-1.0, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(scaler.check_dataset(slightly, "ds"), [[1.0, 0.0], [-1.0, 0.5]])
    with pytest.raises(OffdiffError, match=r"dataset ds: actions leave.*row 1"):
        scaler.check_dataset(np.array([[0.0, 0.0], [0.0, 1.01]]), "ds")
    with pytest.raises(OffdiffError, match="bounded"):
        ActionScaler([-np.inf], [np.inf])
