"""The gymnasium tasks `offdiff data collect` works on: checked once, described by `EnvInfo`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from offdiff.errors import OffdiffError

KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")  # the datasets made per env

# SAC steps that train a good expert on each task (D4RL trained its experts for about 1M steps).
DEFAULT_BUDGETS: dict[str, int] = {
    "Hopper-v5": 1_000_000,
    "HalfCheetah-v5": 1_000_000,
    "Walker2d-v5": 1_000_000,
    "InvertedDoublePendulum-v5": 100_000,
    "InvertedPendulum-v5": 20_000,
}
FALLBACK_BUDGET = 1_000_000


@dataclass(frozen=True)
class EnvInfo:
    env_id: str  # e.g. "Hopper-v5"
    slug: str  # the dataset-id part, e.g. "hopper"
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]

    def make(self) -> gym.Env:
        return gym.make(self.env_id)

    @property
    def default_budget(self) -> int:
        return DEFAULT_BUDGETS.get(self.env_id, FALLBACK_BUDGET)


def env_info(env_id: str) -> EnvInfo:
    """Describe a registered gymnasium env with a flat Box observation, a bounded Box action and a time limit."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as e:
        known = ", ".join(DEFAULT_BUDGETS)
        raise OffdiffError(
            f"unknown env {env_id!r} ({e}); collect from a gymnasium MuJoCo task, e.g. {known}"
        ) from None
    if spec.max_episode_steps is None:
        raise OffdiffError(f"env {env_id} has no time limit (max_episode_steps); collection needs episodes that end")
    try:
        env = gym.make(spec)
    except Exception as e:
        raise OffdiffError(f"cannot make env {env_id}: {type(e).__name__}: {e}") from None
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        raise OffdiffError(f"env {env_id} has {obs_space} observations; collection needs a 1-D Box")
    bounded = isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1 and act_space.is_bounded()
    if not bounded:
        raise OffdiffError(f"env {env_id} has {act_space} actions; collection needs a bounded 1-D Box")
    slug = re.sub(r"[^a-z0-9]", "", spec.name.lower())
    return EnvInfo(
        env_id=spec.id, slug=slug, obs_dim=int(obs_space.shape[0]), act_dim=int(act_space.shape[0]),
        action_low=tuple(np.asarray(act_space.low, dtype=float).tolist()),
        action_high=tuple(np.asarray(act_space.high, dtype=float).tolist()),
    )
