"""`hdf5:<path>` (a file in D4RL's HDF5 layout) and `d4rl:<name>` (D4RL's own file, from the local store).

The task comes from the file's attributes (`task`, else `dataset`), else its name (offdiff.data.tasks).
A file named as D4RL names its files (`hopper_medium-v2.hdf5`) is D4RL's data: D4RL's reference scores
apply and locomotion is evaluated in gymnasium's `-v4` env unless another is given. Any other file needs
its eval env, and its reference scores in its attributes (`ref_min_score`, `ref_max_score`) or from the
user (`--ref-scores`).
"""

from __future__ import annotations

import hashlib
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offdiff.data import d4rl
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
from offdiff.data.tasks import TaskName, task_from_attributes, task_key
from offdiff.data.transitions import FIELDS, Transitions, load_cached
from offdiff.errors import OffdiffError


def read_layout(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """The shapes of D4RL's fields (each checked present, all of one length) and the file's attributes."""
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in FIELDS if k not in f]
            if missing:
                raise OffdiffError(f"dataset file {path} lacks key(s) {', '.join(missing)}; "
                                   f"a D4RL-style file needs {', '.join(FIELDS)}")
            shapes = {k: tuple(f[k].shape) for k in FIELDS}
            attrs = jsonable({k: v for k, v in f.attrs.items()})
    except OSError as e:
        raise OffdiffError(f"cannot read {path} as HDF5: {e}") from e
    lengths = {k: shape[0] if shape else 0 for k, shape in shapes.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} {n}" for k, n in lengths.items())
        raise OffdiffError(f"dataset file {path} has fields of different lengths ({detail}); it is damaged or "
                           "not in D4RL's layout")
    return shapes, attrs


class Hdf5Source(DataSource):
    def __init__(self, path: str, eval_env: str | None = None, *, source: str | None = None,
                 dataset_id: str | None = None, is_d4rl: bool | None = None, task: TaskName | None = None):
        self.source = source or f"hdf5:{path}"
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise OffdiffError(f"dataset file {self.path} does not exist; check the path after hdf5:")
        self.dataset_id = dataset_id or self.path.stem
        self.is_d4rl = d4rl.is_d4rl_file_name(self.path.stem) if is_d4rl is None else is_d4rl
        self.shapes, self.attrs = read_layout(self.path)
        name_rule = "D4RL's file name" if self.is_d4rl else "the file name"
        self.task = task or task_from_attributes(self.attrs, TaskName(task_key(self.dataset_id),
                                                                      f"{name_rule} {self.path.name}"))
        self.eval_env, self.eval_env_rule = self._choose_eval_env(eval_env)

    def _choose_eval_env(self, eval_env: str | None) -> tuple[str, str]:
        if eval_env is not None:
            return eval_env, "given"
        default = d4rl.default_eval_env(self.task.name) if self.is_d4rl else None
        if default is None:
            why = "D4RL locomotion data defaults to gymnasium's -v4 env" if self.is_d4rl else \
                "only D4RL's locomotion files have a default"
            raise OffdiffError(f"{self.source} needs an evaluation env: pass --eval-env (a grid dataset's "
                               f"eval_env:), e.g. Hopper-v4 ({why})")
        return default, "the closest gymnasium env to D4RL's mujoco-py envs (-v4)"

    def env_factory(self) -> EnvFactory:
        return partial(make_gym_env, self.eval_env)

    def _read(self, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        try:
            with h5py.File(self.path, "r") as f:
                return {k: f[k][()] for k in keys}
        except OSError as e:
            raise OffdiffError(f"cannot read {self.path} as HDF5: {e}") from e

    @cached_property
    def _info(self) -> DatasetInfo:
        ends = self._read(("terminals", "timeouts"))
        done = ends["terminals"].astype(bool) | ends["timeouts"].astype(bool)
        n = len(done)
        obs_dim, act_dim = self.shapes["observations"][-1], self.shapes["actions"][-1]
        env = open_eval_env(self.env_factory(), self.dataset_id, self.eval_env)
        try:
            check_env_dims(self.dataset_id, self.eval_env, env, obs_dim, act_dim)
            low, high = box_bounds(env)
        finally:
            env.close()
        return DatasetInfo(
            source=self.source, dataset_id=self.dataset_id, task=self.task.name, obs_dim=int(obs_dim),
            act_dim=int(act_dim), action_low=low, action_high=high, eval_env=self.eval_env, num_transitions=n,
            num_episodes=int(done.sum()) + int(n > 0 and not done[-1]),
            metadata={**self.attrs, "path": str(self.path)}, task_rule=self.task.rule, is_d4rl=self.is_d4rl,
            eval_env_rule=self.eval_env_rule,
        )

    def info(self) -> DatasetInfo:
        return self._info

    def load(self) -> Transitions:
        stat = self.path.stat()
        digest = hashlib.sha256(f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        key = f"hdf5_{self.path.stem}_{digest}"
        return load_cached(key, lambda: Transitions(**self._read(FIELDS))).validate(self.source)


class D4rlSource(Hdf5Source):
    """`d4rl:<name>` (e.g. `d4rl:hopper-medium-v2`): D4RL's file in the local store, fetched beforehand."""

    def __init__(self, name: str, eval_env: str | None = None):
        d4rl.check_name(name)
        path = d4rl.local_path(name)
        if not path.is_file():
            raise OffdiffError(f"dataset 'd4rl:{name}' is not in the local D4RL store ({d4rl.store()}); fetch it on "
                               f"a machine with network: offdiff data fetch d4rl:{name}")
        super().__init__(str(path), eval_env, source=f"d4rl:{name}", dataset_id=name, is_d4rl=True,
                         task=TaskName(task_key(name), f"the D4RL name {name}"))
