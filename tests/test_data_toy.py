"""Toy bandit tasks: the papers' data and rewards, modes, and the one-step env."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offdiff.data.sources import resolve
from offdiff.data.toy import TOY_TASKS, ToyBanditEnv, toy_task
from offdiff.errors import OffdiffError


@pytest.mark.parametrize("name", sorted(TOY_TASKS))
def test_dataset_shapes_bounds_and_one_step_episodes(name: str) -> None:
    task = TOY_TASKS[name]
    t = task.transitions()
    assert len(t) == 10_000
    assert t.observations.shape == t.next_observations.shape == (10_000, 2)
    assert t.actions.shape == (10_000, 2) and t.actions.dtype == np.float32
    assert not t.observations.any() and not t.next_observations.any()
    assert t.terminals.all() and not t.timeouts.any()
    assert np.abs(t.actions).max() <= task.act_bound
    assert (task.mode_index(t.actions) >= 0).mean() > 0.99  # the data is in its own support
    np.testing.assert_array_equal(task.transitions().actions, t.actions)  # fixed data seed


def test_four_corners_matches_diffusion_ql() -> None:
    task = toy_task("four_corners")
    actions, rewards = task.sample(10_000, np.random.default_rng(1))
    modes = task.mode_index(actions)
    assert np.bincount(modes[modes >= 0], minlength=4).min() >= 2490
    corners = np.array([[-0.8, 0.8], [-0.8, -0.8], [0.8, 0.8], [0.8, -0.8]])
    np.testing.assert_allclose(task.reward(corners), [3.0, 0.0, 1.5, 5.0])
    assert task.reward(np.array([[0.0, 0.0]]))[0] == 0.0  # between modes
    for mode, mean in enumerate([3.0, 0.0, 1.5, 5.0]):
        data = rewards[modes == mode]
        assert abs(data.mean() - mean) < 0.05 and abs(data.std() - 0.5) < 0.05
    assert task.best_modes == (3,) and (task.ref_min, task.ref_max, task.act_bound) == (0.0, 5.0, 1.0)


def test_grid25_rewards() -> None:
    a = np.array([[10.0, 10.0], [0.0, 0.0], [-10.0, 10.0], [3.0, 4.0]])
    d = np.array([10 * math.sqrt(2), 0.0, 10 * math.sqrt(2), 5.0])
    np.testing.assert_allclose(toy_task("grid25_far").reward(a), d)
    np.testing.assert_allclose(toy_task("grid25_near").reward(a), 10 * math.sqrt(2) - d)
    np.testing.assert_allclose(toy_task("grid25_hard").reward(a), d * [1, 1, 2, 1])
    far = toy_task("grid25_far")
    corners = {tuple(far.means[i]) for i in far.best_modes}
    assert corners == {(-10.0, -10.0), (-10.0, 10.0), (10.0, -10.0), (10.0, 10.0)}
    assert toy_task("grid25_near").means[toy_task("grid25_near").best_modes[0]] == (0.0, 0.0)
    hard = toy_task("grid25_hard")
    assert [hard.means[i] for i in hard.best_modes] == [(-10.0, 10.0)]
    t = far.transitions()
    np.testing.assert_allclose(t.rewards, np.linalg.norm(t.actions, axis=1), rtol=1e-5)
    assert np.bincount(far.mode_index(t.actions) + 1).max() <= 401


def test_swissroll_support_and_high_reward_end() -> None:
    task = toy_task("swissroll_far")
    t = task.transitions()
    np.testing.assert_allclose(t.rewards, np.linalg.norm(t.actions, axis=1), rtol=1e-5)
    end = 4.5 * math.pi
    outer = np.array([[end * math.cos(end), end * math.sin(end)]])
    inner = np.array([[1.5 * math.pi * math.cos(1.5 * math.pi), 1.5 * math.pi * math.sin(1.5 * math.pi)]])
    assert task.mode_index(outer)[0] == 1 and task.mode_index(inner)[0] == 0
    assert task.mode_index(np.array([[0.0, 0.0], [3.0, 3.0]])).tolist() == [-1, -1]  # off the roll
    assert task.best_modes == (1,)
    assert 0.1 < (task.mode_index(t.actions) == 1).mean() < 0.25


def test_gaussians8_matches_eda() -> None:
    task = toy_task("gaussians8")
    radius = np.linalg.norm(np.asarray(task.means), axis=1)
    np.testing.assert_allclose(radius, 4 / 1.414)
    np.testing.assert_allclose(task.reward(np.asarray(task.means)), np.arange(8) / 7)
    t = task.transitions()
    # data rewards are the sampled centre's index / 7; the modes overlap a little at 3 std
    assert np.isclose(t.rewards, task.mode_index(t.actions) / 7, atol=1e-6).mean() > 0.99
    assert task.best_modes == (7,)


def test_env_one_step_semantics() -> None:
    env = ToyBanditEnv("four_corners")
    obs, info = env.reset(seed=3)
    assert obs.shape == (2,) and not obs.any() and info == {}
    assert env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.action_space.low, [-1, -1])
    obs, reward, terminated, truncated, _ = env.step(np.array([0.8, -0.8], dtype=np.float32))
    assert (reward, terminated, truncated) == (5.0, True, False) and not obs.any()
    assert ToyBanditEnv("grid25_far").action_space.high.tolist() == [12.0, 12.0]


def test_toy_source_and_unknown_name() -> None:
    source = resolve("toy:gaussians8")
    info = source.info()
    assert (info.dataset_id, info.task, info.eval_env) == ("toy/gaussians8", "toy-gaussians8", "toy:gaussians8")
    assert info.action_high == (5.0, 5.0)
    assert source.ref_scores().max == 1.0
    assert isinstance(source.make_env(), ToyBanditEnv)
    with pytest.raises(OffdiffError, match="four_corners"):
        resolve("toy:nope")
