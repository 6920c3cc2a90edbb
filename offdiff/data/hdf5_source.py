"""`hdf5:<path>`: a file in D4RL's HDF5 layout, evaluated in a named gymnasium env."""

from __future__ import annotations

import hashlib
from functools import cached_property, partial
from pathlib import Path

import h5py
import numpy as np

from offdiff.data.base import (
    DatasetInfo,
    DataSource,
    EnvFactory,
    box_bounds,
    check_env_dims,
    make_gym_env,
    open_eval_env,
)
from offdiff.data.scores import task_key
from offdiff.data.transitions import FIELDS, Transitions, load_cached
from offdiff.errors import OffdiffError


class Hdf5Source(DataSource):
    def __init__(self, path: str, eval_env: str | None = None):
        self.source = f"hdf5:{path}"
        self.path = Path(path).expanduser().resolve()
        if eval_env is None:
            raise OffdiffError(f"{self.source} needs an evaluation env: pass eval_env (e.g. Hopper-v5)")
        if not self.path.is_file():
            raise OffdiffError(f"dataset file {self.path} does not exist; check the path after hdf5:")
        self.eval_env = eval_env
        self.dataset_id = self.path.stem

    def _read(self, keys: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, ...]]]:
        """The arrays `keys` and the shapes of all fields (each checked present)."""
        try:
            with h5py.File(self.path, "r") as f:
                missing = [k for k in FIELDS if k not in f]
                if missing:
                    raise OffdiffError(
                        f"dataset file {self.path} lacks key(s) {', '.join(missing)}; "
                        f"a D4RL-style file needs {', '.join(FIELDS)}"
                    )
                return {k: f[k][()] for k in keys}, {k: f[k].shape for k in FIELDS}
        except OSError as e:
            raise OffdiffError(f"cannot read {self.path} as HDF5: {e}") from e

    def env_factory(self) -> EnvFactory:
        return partial(make_gym_env, self.eval_env)

    @cached_property
    def _info(self) -> DatasetInfo:
        ends, shapes = self._read(("terminals", "timeouts"))
        done = ends["terminals"].astype(bool) | ends["timeouts"].astype(bool)
        n = len(done)
        obs_dim, act_dim = shapes["observations"][-1], shapes["actions"][-1]
        env = open_eval_env(self.env_factory(), self.dataset_id, self.eval_env)
        try:
            check_env_dims(self.dataset_id, self.eval_env, env, obs_dim, act_dim)
            low, high = box_bounds(env)
        finally:
            env.close()
        return DatasetInfo(
            source=self.source, dataset_id=self.dataset_id, task=task_key(self.dataset_id),
            obs_dim=int(obs_dim), act_dim=int(act_dim), action_low=low, action_high=high,
            eval_env=self.eval_env, num_transitions=n,
            num_episodes=int(done.sum()) + int(n > 0 and not done[-1]), metadata={"path": str(self.path)},
        )

    def info(self) -> DatasetInfo:
        return self._info

    def load(self) -> Transitions:
        stat = self.path.stat()
        digest = hashlib.sha256(f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        key = f"hdf5_{self.dataset_id}_{digest}"
        return load_cached(key, lambda: Transitions(**self._read(FIELDS)[0])).validate(self.source)
