"""Stand-ins for the modules the releases import but the harness replaces: `gym`, `d4rl` and `wandb`.

`d4rl.qlearning_dataset(env)` returns the transitions the harness fed (`feed`), taken from an offdiff data
source; `gym.make(name)` returns an env that only describes its spaces. Anything that would let a release run
its own evaluation (stepping an env, D4RL's normalized score) raises: evaluation is offdiff's.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from offdiff.errors import OffdiffError

STUBBED = ("gym", "d4rl", "wandb")


class Box:
    """A bounded box space: what the releases read of an action or observation space."""

    def __init__(self, low: float, high: float, dim: int):
        self.low = np.full(dim, low, dtype=np.float32)
        self.high = np.full(dim, high, dtype=np.float32)
        self.shape = (dim,)

    def seed(self, seed: int | None = None) -> list[int | None]:
        return [seed]


class SpacesOnlyEnv:
    """`gym.make`'s stand-in: the data's spaces (actions in [-1, 1], as offdiff feeds them), nothing to step."""

    def __init__(self, name: str, obs_dim: int, act_dim: int):
        self.name = name
        self.observation_space = Box(-np.inf, np.inf, obs_dim)
        self.action_space = Box(-1.0, 1.0, act_dim)

    def seed(self, seed: int | None = None) -> list[int | None]:
        return [seed]

    def reset(self) -> np.ndarray:
        return np.zeros(self.observation_space.shape, dtype=np.float32)

    def step(self, action: Any) -> Any:
        raise OffdiffError(f"the release tried to step env {self.name}; the fidelity harness evaluates through "
                           "offdiff's evaluation path only (an adapter calls a release's own evaluation by mistake)")


class _Fed:
    data: dict[str, np.ndarray] | None = None


def feed(data: dict[str, np.ndarray]) -> None:
    """The transitions `d4rl.qlearning_dataset` returns from now on (D4RL's keys)."""
    _Fed.data = data


def _qlearning_dataset(env: Any = None, dataset: Any = None, **kwargs: Any) -> dict[str, np.ndarray]:
    if _Fed.data is None:
        raise OffdiffError("the release asked d4rl for data before the harness fed any")
    return {k: v.copy() for k, v in _Fed.data.items()}


def _make(name: str, **kwargs: Any) -> SpacesOnlyEnv:
    if _Fed.data is None:
        raise OffdiffError("the release made a gym env before the harness fed any data")
    return SpacesOnlyEnv(name, _Fed.data["observations"].shape[1], _Fed.data["actions"].shape[1])


def _no_normalized_score(*args: Any, **kwargs: Any) -> float:
    raise OffdiffError("the release asked D4RL for a normalized score; offdiff normalizes scores itself")


class _Run:
    """`wandb.init()`'s stand-in: logging goes nowhere (the harness logs through offdiff)."""

    config = types.SimpleNamespace(update=lambda *a, **k: None)

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def finish(self) -> None:
        pass


def modules() -> dict[str, types.ModuleType]:
    """Fresh stub modules by import name."""
    gym = types.ModuleType("gym", "offdiff fidelity stub: spaces only")
    gym.make = _make  # type: ignore[attr-defined]
    d4rl = types.ModuleType("d4rl", "offdiff fidelity stub: data from an offdiff source")
    d4rl.qlearning_dataset = _qlearning_dataset  # type: ignore[attr-defined]
    d4rl.get_normalized_score = _no_normalized_score  # type: ignore[attr-defined]
    wandb = types.ModuleType("wandb", "offdiff fidelity stub: no logging")
    wandb.init = lambda *a, **k: _Run()  # type: ignore[attr-defined]
    wandb.config = _Run.config  # type: ignore[attr-defined]
    wandb.log = lambda *a, **k: None  # type: ignore[attr-defined]
    return {"gym": gym, "d4rl": d4rl, "wandb": wandb}
