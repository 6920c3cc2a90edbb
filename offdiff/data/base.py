"""What every data source gives: a description, validated transitions, an evaluation env, reference scores."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from offdiff.data.scores import RefScores, reference_scores
from offdiff.data.transitions import Transitions
from offdiff.errors import OffdiffError

EnvFactory = Callable[[], gym.Env]


@dataclass(frozen=True)
class DatasetInfo:
    source: str  # the full source string, e.g. "minari:mujoco/hopper/medium-v0"
    dataset_id: str  # "mujoco/hopper/medium-v0", "toy/four_corners" or the HDF5 file stem
    task: str  # the task key (offdiff.data.tasks), picks per-task presets and the protocol
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    eval_env: str  # gymnasium id or "toy:<name>"
    num_transitions: int
    num_episodes: int
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-able
    task_rule: str = "the dataset id"  # how `task` was derived, printed at the start of a run
    is_d4rl: bool = False  # D4RL's own data (d4rl: sources, D4RL file names, Minari's D4RL/ namespace)
    eval_env_rule: str = "given"  # why this eval env: given by the user, recorded in the dataset, or a default


class DataSource(ABC):
    """One dataset with its evaluation env; `resolve` picks the implementation by scheme."""

    source: str

    @abstractmethod
    def info(self) -> DatasetInfo:
        """The dataset's description; checks the dataset against its eval env, loads no data."""

    @abstractmethod
    def load(self) -> Transitions:
        """Validated, flattened transitions."""

    @abstractmethod
    def env_factory(self) -> EnvFactory:
        """A picklable callable that makes one evaluation env."""

    def make_env(self) -> gym.Env:
        return self.env_factory()()

    def ref_scores(self, requested: str | None = None) -> RefScores:
        """By the precedence of `offdiff.data.scores.reference_scores`; `requested` is `--ref-scores`."""
        info = self.info()
        return reference_scores(info.task, info.metadata, is_d4rl=info.is_d4rl, requested=requested,
                                dataset=info.source)


def make_gym_env(env: str | gym.envs.registration.EnvSpec, flatten_obs: bool = False) -> gym.Env:
    """`gym.make(env)`, with observations flattened to a vector when `flatten_obs`."""
    made = gym.make(env)
    return gym.wrappers.FlattenObservation(made) if flatten_obs else made


def open_eval_env(factory: EnvFactory, dataset_id: str, env_name: str) -> gym.Env:
    """Make one env from `factory`, turning any failure into a clear OffdiffError."""
    try:
        return factory()
    except Exception as e:
        raise OffdiffError(
            f"cannot make evaluation env {env_name} for dataset {dataset_id}: {type(e).__name__}: {e}; "
            "install the package that provides it or pass another eval_env"
        ) from e


def check_env_dims(dataset_id: str, env_name: str, env: gym.Env, obs_dim: int, act_dim: int) -> None:
    """The env must have a flat Box observation of obs_dim and a bounded flat Box action of act_dim."""
    if not isinstance(env.action_space, gym.spaces.Box):
        raise OffdiffError(
            f"eval env {env_name} for dataset {dataset_id} has a {type(env.action_space).__name__} action "
            "space; offdiff supports continuous Box actions only"
        )
    for kind, dim, shape in (
        ("observations", obs_dim, env.observation_space.shape),
        ("actions", act_dim, env.action_space.shape),
    ):
        if shape != (dim,):
            raise OffdiffError(
                f"dataset {dataset_id} has {kind} of shape ({dim},) but eval env {env_name} has {shape}; "
                "pass the eval_env the data was collected in"
            )


def box_bounds(env: gym.Env) -> tuple[tuple[float, ...], tuple[float, ...]]:
    space = env.action_space
    return tuple(float(x) for x in space.low), tuple(float(x) for x in space.high)


def jsonable(value: Any) -> Any:
    """A JSON-able copy of metadata: sets become sorted lists, numpy values Python ones, others strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
