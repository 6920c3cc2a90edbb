"""Named data transforms, applied identically at train and eval and recorded in the run manifest.

- reward transforms (`REWARD_TRANSFORMS`), applied to the dataset once;
- `ObsNormalizer`: observation standardization, applied to the dataset and to every env observation;
- `ActionScaler`: maps the env's action box to [-1, 1] for the policy and back for the env.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from offdiff.data.transitions import Transitions
from offdiff.errors import OffdiffError

RewardTransform = Callable[[Transitions], tuple[np.ndarray, dict[str, float]]]
OBS_TRANSFORMS = ("none", "standardize")
OBS_STD_EPS = 1e-3
ACTION_TOLERANCE = 1e-4


def _none(t: Transitions) -> tuple[np.ndarray, dict[str, float]]:
    return t.rewards, {}


def _iql_antmaze(t: Transitions) -> tuple[np.ndarray, dict[str, float]]:
    return t.rewards - 1.0, {"shift": -1.0}


def _cql_antmaze(t: Transitions) -> tuple[np.ndarray, dict[str, float]]:
    return 4.0 * (t.rewards - 0.5), {"scale": 4.0, "shift": -0.5}


def _normalize(t: Transitions) -> tuple[np.ndarray, dict[str, float]]:
    mean, std = float(t.rewards.mean()), float(t.rewards.std())
    if std < 1e-8:
        raise OffdiffError("reward transform 'normalize' needs non-constant rewards; use 'none'")
    return (t.rewards - mean) / std, {"mean": mean, "std": std}


def _iql_locomotion(t: Transitions) -> tuple[np.ndarray, dict[str, float]]:
    returns = t.episode_returns()
    low, high = float(returns.min()), float(returns.max())
    if high - low < 1e-8:
        raise OffdiffError(
            "reward transform 'iql_locomotion' needs episodes with different returns; "
            "use reward_transform=none or normalize"
        )
    scale = 1000.0 / (high - low)
    rewards = t.rewards * scale
    return rewards, {"scale": scale, "max_return": high, "min_return": low, "mean_reward": float(rewards.mean())}


REWARD_TRANSFORMS: dict[str, RewardTransform] = {
    "none": _none,
    "iql_antmaze": _iql_antmaze,  # r - 1
    "cql_antmaze": _cql_antmaze,  # 4 (r - 0.5)
    "normalize": _normalize,  # (r - mean) / std
    "iql_locomotion": _iql_locomotion,  # r * 1000 / (max episode return - min episode return)
}


def describe_reward_transform(name: str, params: dict[str, float]) -> str | None:
    """The line a run prints about its reward transform where the data sets its numbers (None: nothing to say).

    `iql_locomotion` scales by the dataset's own return range, so the scale (and every Q-value, and the sharpness
    of anything tuned on Q, such as EDA's softmax(α·Q) labels) depends on the data's spread of returns: 15.2 on
    the local suite's Hopper medium, whose 761 episodes of one policy return 248 to 314.
    """
    if name != "iql_locomotion":
        return None
    return (f"reward transform iql_locomotion: rewards x {params['scale']:.4g} (1000 / the range of episode returns, "
            f"{params['min_return']:.4g} to {params['max_return']:.4g}); mean reward per step now "
            f"{params['mean_reward']:.4g}")


def _check_name(kind: str, name: str, valid: Any) -> None:
    if name not in valid:
        raise OffdiffError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")


def check_transform_names(obs_transform: str, reward_transform: str) -> None:
    _check_name("obs_transform", obs_transform, OBS_TRANSFORMS)
    _check_name("reward_transform", reward_transform, tuple(REWARD_TRANSFORMS))


def apply_reward_transform(name: str, transitions: Transitions) -> tuple[Transitions, dict[str, float]]:
    """The transformed transitions and the numbers used (for the run manifest)."""
    _check_name("reward_transform", name, tuple(REWARD_TRANSFORMS))
    rewards, params = REWARD_TRANSFORMS[name](transitions)
    return transitions.replace(rewards=rewards), params


class _TensorCache:
    """Numpy constants as tensors, one copy per (device, dtype)."""

    def __init__(self, **arrays: np.ndarray):
        self.arrays = arrays
        self.tensors: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, like: torch.Tensor) -> torch.Tensor:
        key = (name, like.device, like.dtype)
        if key not in self.tensors:
            self.tensors[key] = torch.as_tensor(self.arrays[name], dtype=like.dtype, device=like.device)
        return self.tensors[key]


class ObsNormalizer:
    """`none` or `standardize` ((x - mean) / (std + 1e-3), statistics over the dataset's observations)."""

    def __init__(self, name: str, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        _check_name("obs_transform", name, OBS_TRANSFORMS)
        self.name = name
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        if (name == "standardize") != (self.mean is not None and self.std is not None):
            raise OffdiffError(f"obs_transform {name!r}: give mean and std for 'standardize' only")
        self._tensors = _TensorCache(mean=self.mean, std=self.std) if self.mean is not None else None

    @classmethod
    def from_name(cls, name: str, transitions: Transitions) -> ObsNormalizer:
        _check_name("obs_transform", name, OBS_TRANSFORMS)
        if name == "none":
            return cls(name)
        obs = transitions.observations.astype(np.float64)
        return cls(name, obs.mean(axis=0), obs.std(axis=0) + OBS_STD_EPS)

    def normalize_np(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x if self.mean is None else (x - self.mean) / self.std

    def normalize_torch(self, x: torch.Tensor) -> torch.Tensor:
        if self._tensors is None:
            return x
        return (x - self._tensors.get("mean", x)) / self._tensors.get("std", x)

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ObsNormalizer:
        return cls(state["name"], state.get("mean"), state.get("std"))


class ActionScaler:
    """Affine map between the env's action box [low, high] and the policy's [-1, 1] (identity for [-1, 1])."""

    def __init__(self, low: Any, high: Any):
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        finite = np.isfinite(self.low).all() and np.isfinite(self.high).all()
        if not (finite and self.low.shape == self.high.shape and (self.high > self.low).all()):
            raise OffdiffError(
                f"the env's action space must be a bounded box with low < high, got low={self.low.tolist()} "
                f"high={self.high.tolist()}; use an env with a bounded action space"
            )
        self.identity = bool((self.low == -1).all() and (self.high == 1).all())
        self._tensors = _TensorCache(low=self.low, high=self.high)

    def check_dataset(self, actions: np.ndarray, name: str) -> np.ndarray:
        """Clip actions that leave the box by at most 1e-4 of its half-width; raise beyond that."""
        tol = ACTION_TOLERANCE * (self.high - self.low) / 2
        outside = ((actions < self.low - tol) | (actions > self.high + tol)).any(axis=1)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise OffdiffError(
                f"dataset {name}: actions leave the env's action bounds [{self.low.tolist()}, "
                f"{self.high.tolist()}] (first at row {row}: {actions[row].tolist()}); "
                "pass the eval_env the data was collected in"
            )
        return np.clip(actions, self.low, self.high).astype(np.float32)

    def to_policy(self, actions: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Env actions -> [-1, 1]."""
        if self.identity:
            return actions
        if isinstance(actions, torch.Tensor):
            low, high = self._tensors.get("low", actions), self._tensors.get("high", actions)
            return 2 * (actions - low) / (high - low) - 1
        return (2 * (actions - self.low) / (self.high - self.low) - 1).astype(np.float32)

    def to_env(self, actions: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Policy actions (clipped to [-1, 1]) -> env actions."""
        if isinstance(actions, torch.Tensor):
            actions = actions.clamp(-1, 1)
            if self.identity:
                return actions
            low, high = self._tensors.get("low", actions), self._tensors.get("high", actions)
            return low + (actions + 1) * (high - low) / 2
        actions = np.clip(np.asarray(actions, dtype=np.float32), -1, 1)
        if self.identity:
            return actions
        return (self.low + (actions + 1) * (self.high - self.low) / 2).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {"low": self.low.tolist(), "high": self.high.tolist()}
