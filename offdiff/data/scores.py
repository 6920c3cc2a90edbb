"""Reference scores (D4RL's published numbers) and normalized scores; task names for presets.

Dataset ids come in several forms, all handled here: D4RL (`hopper-medium-v2`), Minari
(`mujoco/hopper/medium-v0`, `D4RL/antmaze/umaze-v1`), file stems, toy ids (`toy/four_corners`) and
source strings (`minari:...`, `hdf5:...`, `toy:...`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

from offdiff.data.toy import toy_task
from offdiff.errors import OffdiffError

D4RL_SOURCE = "D4RL infos.py REF_MIN_SCORE/REF_MAX_SCORE"

# Per env family, from d4rl/infos.py (locomotion v2 = <env>-random-v0, Adroit v1 = <env>-human-v0).
_FAMILY_SCORES: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "kitchen": (0.0, 4.0),
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
}
# Tasks whose scores differ within a family (sparse maze2d only; dense maze2d is not in the table).
_TASK_SCORES: dict[str, tuple[float, float]] = {
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-large": (6.7, 273.99),
}
_VERSION = re.compile(r"-v\d+$")


@dataclass(frozen=True)
class RefScores:
    min: float
    max: float
    source: str


def _bare_id(dataset_id: str) -> str:
    """Strip a source scheme: `minari:X` -> X, `toy:X` -> toy/X, `hdf5:dir/X.hdf5` -> X."""
    scheme, sep, rest = dataset_id.partition(":")
    if not sep:
        return dataset_id
    if scheme == "toy":
        return f"toy/{rest}"
    if scheme == "hdf5":
        return PurePath(rest).stem
    return rest if scheme == "minari" else dataset_id


def _family_and_name(dataset_id: str) -> tuple[str, str]:
    bare = _bare_id(dataset_id)
    if "/" in bare:
        parts = bare.split("/")
        return parts[-2].lower(), _VERSION.sub("", parts[-1]).lower()
    family, _, name = _VERSION.sub("", bare).lower().partition("-")
    return family, name


def task_key(dataset_id: str) -> str:
    """D4RL-style task name without version: `mujoco/hopper/medium-v0` -> `hopper-medium`."""
    family, name = _family_and_name(dataset_id)
    return f"{family}-{name}" if name else family


def reference_scores(dataset_id: str, metadata: dict[str, Any] | None = None) -> RefScores:
    """The dataset's own Minari metadata first, else offdiff's D4RL table (by task, then env family), else error.

    Metadata wins because it describes the data at hand: Minari's D4RL datasets carry D4RL's numbers, and
    a dataset from `offdiff data collect` carries its own random policy's and expert's returns.
    """
    family, name = _family_and_name(dataset_id)
    if family == "toy":
        task = toy_task(name)
        return RefScores(task.ref_min, task.ref_max, f"offdiff toy task {task.name}")
    meta = metadata or {}
    low, high = meta.get("ref_min_score"), meta.get("ref_max_score")
    if low is not None and high is not None:
        return RefScores(float(low), float(high), "Minari metadata ref_min_score/ref_max_score")
    key = task_key(dataset_id)
    if key in _TASK_SCORES:
        return RefScores(*_TASK_SCORES[key], D4RL_SOURCE)
    if family in _FAMILY_SCORES:
        return RefScores(*_FAMILY_SCORES[family], D4RL_SOURCE)
    raise OffdiffError(
        f"no reference score for dataset {dataset_id}: {key!r} is not in offdiff's table and the dataset "
        "metadata has no ref_min_score/ref_max_score; recreate it with both scores"
    )


def normalized_score(returns: float | np.ndarray, ref: RefScores) -> float | np.ndarray:
    """D4RL convention: 100 * (R - min) / (max - min)."""
    score = 100.0 * (np.asarray(returns, dtype=np.float64) - ref.min) / (ref.max - ref.min)
    return float(score) if score.ndim == 0 else score
