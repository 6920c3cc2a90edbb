"""`minari:<id>`: a dataset from the local Minari store (never downloads; see `offdiff.data.fetch`)."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property, partial

import gymnasium as gym
import minari
import numpy as np
from minari.storage.datasets_root_dir import get_dataset_path

from offdiff.data.base import (
    DatasetInfo,
    DataSource,
    EnvFactory,
    box_bounds,
    check_env_dims,
    jsonable,
    make_gym_env,
    open_eval_env,
)
from offdiff.data.d4rl import MINARI_NAMESPACE
from offdiff.data.tasks import task_key
from offdiff.data.transitions import Transitions, load_cached
from offdiff.errors import OffdiffError

LOCAL_SUITE_SCRIPT = "benchmarks/collect_local_suite.sh"  # collects `local/<env>/<kind>-v0`


def flatten_observations(space: gym.Space, obs: np.ndarray | dict) -> np.ndarray:
    """(T, ...) observations -> (T, flatdim) float32, in `gymnasium.spaces.flatten`'s order."""
    if isinstance(space, gym.spaces.Dict):
        parts = [flatten_observations(sub, obs[key]) for key, sub in space.spaces.items()]
        return np.concatenate(parts, axis=1)
    if isinstance(space, gym.spaces.Box):
        obs = np.asarray(obs)
        return obs.reshape(len(obs), -1).astype(np.float32)
    raise OffdiffError(f"unsupported observation space {space}; offdiff reads Box and Dict observations")


def _needs_flatten(space: gym.Space) -> bool:
    return not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1)


class MinariSource(DataSource):
    def __init__(self, dataset_id: str, eval_env: str | None = None):
        self.source = f"minari:{dataset_id}"
        self.dataset_id = dataset_id
        self.eval_env = eval_env
        self.path = get_dataset_path(dataset_id)
        if not (self.path / "data").is_dir():
            how = (f"make it with `offdiff data collect` (the built-in local suite: bash {LOCAL_SUITE_SCRIPT})"
                   if dataset_id.startswith("local/") else
                   f"fetch it on a machine with network: offdiff data fetch {dataset_id}")
            raise OffdiffError(
                f"dataset {dataset_id!r} is not in the local Minari store ({get_dataset_path()}); {how}"
            )

    @cached_property
    def dataset(self) -> minari.MinariDataset:
        try:
            return minari.load_dataset(self.dataset_id)
        except Exception as e:
            raise OffdiffError(f"cannot open Minari dataset {self.dataset_id} at {self.path}: {e}") from e

    @cached_property
    def _env(self) -> tuple[EnvFactory, str, str]:
        """The eval env factory (from `eval_env`, else the dataset's recorded eval env), its name and why."""
        flatten = _needs_flatten(self.dataset.observation_space)
        if self.eval_env is not None:
            return partial(make_gym_env, self.eval_env, flatten), self.eval_env, "given"
        try:
            env = self.dataset.recover_environment(eval_env=True)
        except Exception as e:
            raise OffdiffError(
                f"cannot recover the evaluation env of dataset {self.dataset_id}: {type(e).__name__}: {e}; "
                "install the package that provides it or pass eval_env"
            ) from e
        spec = env.spec
        env.close()
        return partial(make_gym_env, spec, flatten), spec.id, "the eval env recorded in the Minari dataset"

    def env_factory(self) -> EnvFactory:
        return self._env[0]

    @cached_property
    def _info(self) -> DatasetInfo:
        ds = self.dataset
        if not (isinstance(ds.action_space, gym.spaces.Box) and len(ds.action_space.shape) == 1):
            raise OffdiffError(f"dataset {self.dataset_id} has {ds.action_space} actions; need a 1-D Box")
        obs_dim, act_dim = gym.spaces.flatdim(ds.observation_space), ds.action_space.shape[0]
        factory, env_name, env_rule = self._env
        env = open_eval_env(factory, self.dataset_id, env_name)
        try:
            check_env_dims(self.dataset_id, env_name, env, obs_dim, act_dim)
            low, high = box_bounds(env)
        finally:
            env.close()
        return DatasetInfo(
            source=self.source, dataset_id=self.dataset_id, task=task_key(self.dataset_id),
            obs_dim=obs_dim, act_dim=act_dim, action_low=low, action_high=high, eval_env=env_name,
            num_transitions=int(ds.total_steps), num_episodes=int(ds.total_episodes),
            metadata=jsonable(ds.storage.metadata), task_rule=f"the Minari id {self.dataset_id}",
            is_d4rl=self.dataset_id.startswith(MINARI_NAMESPACE), eval_env_rule=env_rule,
        )

    def info(self) -> DatasetInfo:
        return self._info

    def _cache_key(self) -> str:
        files = sorted(p for p in (self.path / "data").rglob("*") if p.is_file())
        stamp = [(str(p.relative_to(self.path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        digest = hashlib.sha256(json.dumps([self.source, stamp]).encode()).hexdigest()[:16]
        return f"minari_{self.dataset_id.replace('/', '_')}_{digest}"

    def _flatten(self) -> Transitions:
        """Episodes (T+1 observations each) -> transitions; an episode that just stops is a timeout."""
        space = self.dataset.observation_space
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "next", "act", "rew", "term", "trunc")}
        for ep in self.dataset.iterate_episodes():
            if len(ep.actions) == 0:
                continue
            obs = flatten_observations(space, ep.observations)
            truncations = np.asarray(ep.truncations, dtype=bool).copy()
            terminations = np.asarray(ep.terminations, dtype=bool)
            truncations[-1] |= not terminations[-1]
            for key, value in (
                ("obs", obs[:-1]), ("next", obs[1:]), ("act", ep.actions), ("rew", ep.rewards),
                ("term", terminations), ("trunc", truncations),
            ):
                parts[key].append(np.asarray(value))
        if not parts["act"]:
            raise OffdiffError(f"dataset {self.dataset_id} has no transitions")
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        return Transitions(cat["obs"], cat["act"], cat["rew"], cat["next"], cat["term"], cat["trunc"])

    def load(self) -> Transitions:
        return load_cached(self._cache_key(), self._flatten).validate(self.source)

