"""Task names: the D4RL-style key (e.g. `hopper-medium`) that picks a run's preset and protocol.

The rules, in the order they are tried (README, "Tasks and presets"):

1. `--task NAME` (a grid dataset's `task:`) names it; `--task none` trains with the paper's defaults.
2. An HDF5 file's own attribute `task` (taken as it is), else its attribute `dataset` (by rule 4).
3. A path-like id `<namespace>/<env>/<dataset>-vN` (Minari: `D4RL/antmaze/medium-play-v1`,
   `mujoco/hopper/medium-v0`, `local/walker2d/medium-v0`) gives `<env>-<dataset>`; `toy/<name>` gives
   `toy-<name>`.
4. A flat id or file name (`hopper_medium-v2`, `hopper-medium-v2`, `hopper-v5-medium`) is lower-cased,
   underscores become hyphens and every version token `-vN` is dropped: `hopper-medium`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

NO_TASK = "none"
_VERSION_TOKEN = re.compile(r"-v\d+(?=-|$)")


@dataclass(frozen=True)
class TaskName:
    """A task key and the rule that produced it, printed at the start of a run and kept in its manifest."""

    name: str
    rule: str


def bare_id(dataset_id: str) -> str:
    """Strip a source scheme: `minari:X` -> X, `toy:X` -> toy/X, `hdf5:dir/X.hdf5` -> X, `d4rl:X` -> X."""
    scheme, sep, rest = dataset_id.partition(":")
    if not sep:
        return dataset_id
    if scheme == "toy":
        return f"toy/{rest}"
    if scheme == "hdf5":
        return PurePath(rest).stem
    return rest if scheme in ("minari", "d4rl") else dataset_id


def _flat_key(name: str) -> str:
    return _VERSION_TOKEN.sub("", name.lower().replace("_", "-"))


def task_key(dataset_id: str) -> str:
    """The task key of a dataset id by rules 3 and 4: `mujoco/hopper/medium-v0` -> `hopper-medium`."""
    bare = bare_id(dataset_id)
    if "/" not in bare:
        return _flat_key(bare)
    parts = bare.split("/")
    if parts[0].lower() == "toy":
        return f"toy-{parts[-1]}"
    return f"{_flat_key(parts[-2])}-{_flat_key(parts[-1])}"


def family(task: str) -> str:
    """The env family of a task key: `hopper-medium` -> `hopper`."""
    return task.partition("-")[0]


def task_from_attributes(attrs: dict[str, object], fallback: TaskName) -> TaskName:
    """Rule 2: an HDF5 file's `task` attribute, else its `dataset` attribute, else `fallback`."""
    if isinstance(attrs.get("task"), str) and attrs["task"].strip():
        return TaskName(str(attrs["task"]).strip().lower(), "the file's `task` attribute")
    if isinstance(attrs.get("dataset"), str) and attrs["dataset"].strip():
        dataset = str(attrs["dataset"]).strip()
        return TaskName(task_key(dataset), f"the file's `dataset` attribute {dataset!r}")
    return fallback
