"""Reference scores (the user's, the dataset's own, or D4RL's published numbers) and normalized scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from offdiff.data.tasks import family
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


@dataclass(frozen=True)
class RefScores:
    min: float
    max: float
    source: str


D4RL_REQUEST = "d4rl"


def d4rl_scores(task: str) -> RefScores | None:
    """D4RL's reference scores for a task key (by task, then env family), or None outside D4RL's table."""
    if task in _TASK_SCORES:
        return RefScores(*_TASK_SCORES[task], D4RL_SOURCE)
    if family(task) in _FAMILY_SCORES:
        return RefScores(*_FAMILY_SCORES[family(task)], D4RL_SOURCE)
    return None


def parse_ref_scores(text: str) -> RefScores | str:
    """`--ref-scores MIN,MAX` -> RefScores; `--ref-scores d4rl` -> "d4rl"; anything else is a clear error."""
    if text.strip().lower() == D4RL_REQUEST:
        return D4RL_REQUEST
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise OffdiffError(f"--ref-scores expects MIN,MAX (two numbers) or d4rl, got {text!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise OffdiffError(f"--ref-scores {text!r}: need finite MIN < MAX")
    return RefScores(low, high, f"--ref-scores {low:g},{high:g}")


def reference_scores(
    task: str, metadata: dict[str, Any] | None = None, *, is_d4rl: bool = False, requested: str | None = None,
    dataset: str = "",
) -> RefScores:
    """The reference scores of a dataset, by a fixed precedence; never a silent guess.

    1. `requested`: `MIN,MAX` from the user, or `d4rl` (D4RL's constants for the task, asked for);
    2. the dataset's own metadata (Minari metadata, HDF5 attributes `ref_min_score`/`ref_max_score`);
    3. D4RL's table, only for data that is D4RL's (`is_d4rl`: `d4rl:` sources, D4RL file names, Minari's
       `D4RL/` namespace); the toy tasks' own scores for toy data;
    4. otherwise an error that says how to give them.
    """
    if requested is not None:
        choice = parse_ref_scores(requested)
        if isinstance(choice, RefScores):
            return choice
        scores = d4rl_scores(task)
        if scores is None:
            raise OffdiffError(f"--ref-scores d4rl: task {task!r} of {dataset} is not in D4RL's reference table")
        return RefScores(scores.min, scores.max, f"{D4RL_SOURCE} (requested with --ref-scores d4rl)")
    if task.startswith("toy-"):
        toy = toy_task(task.removeprefix("toy-"))
        return RefScores(toy.ref_min, toy.ref_max, f"offdiff toy task {toy.name}")
    meta = metadata or {}
    low, high = meta.get("ref_min_score"), meta.get("ref_max_score")
    if low is not None and high is not None:
        return RefScores(float(low), float(high), "dataset metadata ref_min_score/ref_max_score")
    scores = d4rl_scores(task) if is_d4rl else None
    if scores is not None:
        return scores
    why = ("it is D4RL data but its task is not in offdiff's D4RL table" if is_d4rl else
           "it is not D4RL's data and its metadata has no ref_min_score/ref_max_score")
    raise OffdiffError(
        f"no reference scores for {dataset or task}: {why}; pass --ref-scores MIN,MAX (a grid dataset's "
        "ref_scores: [MIN, MAX]), or --ref-scores d4rl to normalize with D4RL's constants for its task"
    )


def normalized_score(returns: float | np.ndarray, ref: RefScores) -> float | np.ndarray:
    """D4RL convention: 100 * (R - min) / (max - min)."""
    score = 100.0 * (np.asarray(returns, dtype=np.float64) - ref.min) / (ref.max - ref.min)
    return float(score) if score.ndim == 0 else score
