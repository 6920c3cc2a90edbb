"""The papers' 2-D bandit tasks: datasets with ground-truth rewards and a one-step gymnasium env.

The state is always zeros(2); an episode is one action. `mode_index` tells which data mode an action
falls in (-1: out of the data's support), `best_modes` which modes carry the highest reward, so a
learning test can check that a policy puts its actions there.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from offdiff.data.transitions import Transitions
from offdiff.errors import OffdiffError

RewardFn = Callable[[np.ndarray], np.ndarray]
DEFAULT_SIZE = 10_000
DATA_SEED = 0


class ToyTask(ABC):
    """A 2-D bandit: actions in [-act_bound, act_bound]^2, observation zeros(2)."""

    name: str
    act_bound: float
    ref_min: float
    ref_max: float
    obs_dim: int = 2

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(actions (n, 2), rewards (n,)) with rewards as the paper's dataset has them."""

    @abstractmethod
    def reward(self, actions: np.ndarray) -> np.ndarray:
        """Ground-truth reward of each action (what the env pays)."""

    @abstractmethod
    def mode_index(self, actions: np.ndarray) -> np.ndarray:
        """Index of the data mode each action falls in, -1 outside the data's support."""

    @property
    @abstractmethod
    def best_modes(self) -> tuple[int, ...]:
        """Indices of the highest-reward modes."""

    def transitions(self, n: int = DEFAULT_SIZE, seed: int = DATA_SEED) -> Transitions:
        """The dataset as one-step episodes: terminal after every action, zero observations."""
        actions, rewards = self.sample(n, np.random.default_rng(seed))
        zeros = np.zeros((n, self.obs_dim), dtype=np.float32)
        return Transitions(zeros, actions, rewards, zeros.copy(), np.ones(n, bool), np.zeros(n, bool))


@dataclass(frozen=True)
class MixtureTask(ToyTask):
    """Isotropic Gaussian modes with equal counts; the mode of an action is the nearest within 4 std.

    Rewards are either per mode (`mode_rewards`: the data gets the sampled mode's value plus
    N(0, reward_noise^2) noise; the env pays the value of the mode within 4 std, else 0) or a function
    of the action (`reward_fn`, the same for data and env).
    """

    name: str
    act_bound: float
    ref_min: float
    ref_max: float
    means: tuple[tuple[float, float], ...]
    std: float
    mode_rewards: tuple[float, ...] | None = None
    reward_fn: RewardFn | None = None
    reward_noise: float = 0.0

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        means = np.asarray(self.means)
        modes = rng.permutation(np.arange(n) % len(means))
        actions = means[modes] + self.std * rng.standard_normal((n, 2))
        actions = np.clip(actions, -self.act_bound, self.act_bound)
        if self.mode_rewards is None:
            return actions, self._reward_fn(actions)
        rewards = np.asarray(self.mode_rewards)[modes] + self.reward_noise * rng.standard_normal(n)
        return actions, rewards

    def reward(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        if self.mode_rewards is None:
            return self._reward_fn(actions)
        modes = self.mode_index(actions)
        return np.where(modes >= 0, np.asarray(self.mode_rewards)[modes], 0.0)

    def mode_index(self, actions: np.ndarray) -> np.ndarray:
        diff = np.asarray(actions, dtype=np.float64)[:, None, :] - np.asarray(self.means)[None]
        dist = np.linalg.norm(diff, axis=-1)
        nearest = dist.argmin(axis=1)
        return np.where(dist.min(axis=1) <= 4 * self.std, nearest, -1)

    @property
    def best_modes(self) -> tuple[int, ...]:
        if self.mode_rewards is not None:
            values = np.asarray(self.mode_rewards)
        else:
            values = self._reward_fn(np.asarray(self.means))
        return tuple(int(i) for i in np.flatnonzero(np.isclose(values, values.max())))

    def _reward_fn(self, actions: np.ndarray) -> np.ndarray:
        assert self.reward_fn is not None
        return self.reward_fn(actions)


@dataclass(frozen=True)
class SwissRollTask(ToyTask):
    """A swiss roll t = 1.5π(1 + 2u), (x, z) = (t cos t, t sin t) + N(0, noise^2), u ~ U(0, 1).

    Modes: an action within `support_radius` of the roll curve is in mode 1 (the high-reward outer
    end, t >= `high_t`) or mode 0 (the rest of the roll); -1 elsewhere. `best_modes` is (1,).
    """

    name: str
    act_bound: float
    ref_min: float
    ref_max: float
    reward_fn: RewardFn
    noise: float = 0.1
    support_radius: float = 0.5
    high_t: float = 4 * math.pi
    t_range: tuple[float, float] = (1.5 * math.pi, 4.5 * math.pi)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        t = self.t_range[0] + (self.t_range[1] - self.t_range[0]) * rng.random(n)
        actions = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + self.noise * rng.standard_normal((n, 2))
        actions = np.clip(actions, -self.act_bound, self.act_bound)
        return actions, self.reward_fn(actions)

    def reward(self, actions: np.ndarray) -> np.ndarray:
        return self.reward_fn(np.asarray(actions, dtype=np.float64))

    def mode_index(self, actions: np.ndarray, chunk: int = 2048) -> np.ndarray:
        t = np.linspace(*self.t_range, 4000)
        curve = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
        actions = np.asarray(actions, dtype=np.float64)
        modes = np.empty(len(actions), dtype=np.int64)
        for start in range(0, len(actions), chunk):
            block = actions[start : start + chunk]
            sq_dist = (block**2).sum(1)[:, None] + (curve**2).sum(1)[None] - 2 * block @ curve.T
            nearest = sq_dist.argmin(axis=1)
            in_support = sq_dist[np.arange(len(block)), nearest] <= self.support_radius**2
            high = (t[nearest] >= self.high_t).astype(np.int64)
            modes[start : start + chunk] = np.where(in_support, high, -1)
        return modes

    @property
    def best_modes(self) -> tuple[int, ...]:
        return (1,)


def _norm(actions: np.ndarray) -> np.ndarray:
    return np.linalg.norm(actions, axis=-1)


_GRID_MAX = 10 * math.sqrt(2)


def _hard(actions: np.ndarray) -> np.ndarray:
    upper_left = (actions[:, 0] < -7.5) & (actions[:, 1] > 7.5)
    return _norm(actions) * np.where(upper_left, 2.0, 1.0)


def _grid25(name: str, reward_fn: RewardFn, ref_max: float) -> MixtureTask:
    """DTQL's 25 Gaussians: means {-10,-5,0,5,10}^2 (index 5*i + j for x_i, y_j), std 0.3, 400 each."""
    values = (-10.0, -5.0, 0.0, 5.0, 10.0)
    means = tuple((x, y) for x in values for y in values)
    return MixtureTask(name, 12.0, 0.0, ref_max, means, 0.3, reward_fn=reward_fn)


_UNIT8 = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))

TOY_TASKS: dict[str, ToyTask] = {
    # Diffusion-QL: corners upper-left, lower-left, upper-right, lower-right; reward ~ N(mean, 0.5^2).
    "four_corners": MixtureTask(
        "four_corners", 1.0, 0.0, 5.0,
        means=((-0.8, 0.8), (-0.8, -0.8), (0.8, 0.8), (0.8, -0.8)), std=0.05,
        mode_rewards=(3.0, 0.0, 1.5, 5.0), reward_noise=0.5,
    ),
    # DTQL: reward of the distance d = ||a|| (far), 10√2 - d (near), d doubled upper-left (hard).
    "grid25_far": _grid25("grid25_far", _norm, _GRID_MAX),
    "grid25_near": _grid25("grid25_near", lambda a: _GRID_MAX - _norm(a), _GRID_MAX),
    "grid25_hard": _grid25("grid25_hard", _hard, 2 * _GRID_MAX),
    # DTQL: swiss roll with reward d = ||a||.
    "swissroll_far": SwissRollTask("swissroll_far", 15.0, 0.0, 4.5 * math.pi, _norm),
    # EDA: 8 centres on a radius-4 circle, std 0.5, all divided by 1.414; reward = centre index / 7.
    "gaussians8": MixtureTask(
        "gaussians8", 5.0, 0.0, 1.0,
        means=tuple((4 * x / math.hypot(x, y) / 1.414, 4 * y / math.hypot(x, y) / 1.414) for x, y in _UNIT8),
        std=0.5 / 1.414, mode_rewards=tuple(i / 7 for i in range(8)),
    ),
}


def toy_task(name: str) -> ToyTask:
    if name not in TOY_TASKS:
        raise OffdiffError(f"unknown toy task {name!r}; valid: {', '.join(sorted(TOY_TASKS))}")
    return TOY_TASKS[name]


class ToyBanditEnv(gym.Env):
    """One-step env: observation zeros(2), reward = the task's ground truth, then terminated."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: ToyTask | str):
        self.task = toy_task(task) if isinstance(task, str) else task
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.task.obs_dim,), np.float32)
        bound = self.task.act_bound
        self.action_space = gym.spaces.Box(-bound, bound, (2,), np.float32)

    def _obs(self) -> np.ndarray:
        return np.zeros(self.task.obs_dim, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action: np.ndarray):
        reward = float(self.task.reward(np.asarray(action, dtype=np.float64).reshape(1, 2))[0])
        return self._obs(), reward, True, False, {}
