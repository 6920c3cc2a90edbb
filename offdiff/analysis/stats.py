"""rliable statistics on score matrices: aggregate interval estimates, probability of improvement, profiles,
sample-efficiency curves (IQM per training step) and per-task means.

rliable takes scores on a 0-1 scale (normalized score / 100); aggregates are reported back on the
0-100 scale, probabilities and profile fractions stay 0-1. CIs are 95% percentile stratified-bootstrap
intervals. rliable 1.2.0 draws its bootstrap indices from NumPy's global legacy RNG (`np.random.choice`)
whatever `random_state` is passed, so every bootstrap runs under `seeded(seed)`, which reseeds that RNG
and restores it afterwards; each algorithm and each pair starts from the same fixed seed, so its interval
does not depend on which other algorithms are in the collection. A bootstrap needs two seeds or more:
with one, the point estimate is reported alone (CI None). The probability of improvement and the score
distribution are vectorized equivalents of rliable's (which loop over scipy and `np.vectorize`, ~10x
slower inside a bootstrap); the tests check them against rliable.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import scipy.stats
from rliable import library, metrics

from offdiff.analysis.scores import ScoreMatrices
from offdiff.errors import OffdiffError

METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "IQM": metrics.aggregate_iqm,
    "Mean": metrics.aggregate_mean,
    "Median": metrics.aggregate_median,
    "Optimality gap": metrics.aggregate_optimality_gap,
}


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% CI (None when the bootstrap had fewer than two seeds)."""

    point: float
    low: float | None
    high: float | None


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run with NumPy's global legacy RNG seeded (rliable's bootstrap draws from it); restore it after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _bootstrap(data: np.ndarray | tuple[np.ndarray, ...], func: Callable[..., np.ndarray], reps: int,
               seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """`func` on the data, and its (2, k) CI over rliable's stratified bootstrap (None below two seeds)."""
    arrays = data if isinstance(data, tuple) else (data,)
    point = np.atleast_1d(func(*arrays))
    if min(len(a) for a in arrays) < 2:
        return point, None
    with seeded(seed):
        _, intervals = library.get_interval_estimates({"x": data}, func, reps=reps)
    return point, intervals["x"]


def _estimate(point: np.ndarray, ci: np.ndarray | None, i: int, scale: float) -> Estimate:
    if ci is None:
        return Estimate(scale * float(point[i]), None, None)
    return Estimate(scale * float(point[i]), scale * float(ci[0, i]), scale * float(ci[1, i]))


def improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's probability of improvement, vectorized: per task the Mann-Whitney U of x over y divided by
    the number of run pairs (ties count one half), averaged over tasks."""
    diff = x[:, None, :] - y[None, :, :]
    return float(np.mean((diff > 0).mean(axis=(0, 1)) + 0.5 * (diff == 0).mean(axis=(0, 1))))


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rliable's `score_distributions`, vectorized: the fraction of all scores above each tau."""
    return (scores[..., None] > taus).mean(axis=tuple(range(scores.ndim)))


def _all_metrics(scores: np.ndarray) -> np.ndarray:
    return np.array([f(scores) for f in METRICS.values()])


def aggregate_estimates(matrices: ScoreMatrices, reps: int, seed: int) -> dict[str, dict[str, Estimate]]:
    """IQM, mean, median and optimality gap (0-100 scale) with CIs, per algorithm."""
    out = {}
    for algorithm, scores in matrices.scores.items():
        point, ci = _bootstrap(scores / 100, _all_metrics, reps, seed)
        out[algorithm] = {name: _estimate(point, ci, i, 100.0) for i, name in enumerate(METRICS)}
    return out


def probability_of_improvement(matrices: ScoreMatrices, reps: int, seed: int) -> dict[tuple[str, str], Estimate]:
    """P(X > Y) for every pair of algorithms X before Y (in the matrices' order), with CIs."""
    out = {}
    for x, y in itertools.combinations(matrices.scores, 2):
        point, ci = _bootstrap((matrices.scores[x] / 100, matrices.scores[y] / 100),
                               improvement, reps, seed)
        out[x, y] = _estimate(point, ci, 0, 1.0)
    return out


def profile_thresholds(matrices: ScoreMatrices, tau_max: float | None = None, points: int = 201) -> np.ndarray:
    """Thresholds tau (0-1 scale) fitted to the scores: from 0 (or the lowest score, rounded down to ten) to
    past the best score (by at least half a unit of ten, so its drop shows), rounded up to ten, or to
    `tau_max` (0-100 scale) when given."""
    scores = list(matrices.scores.values())
    low = min(0.0, 10 * math.floor(min(float(s.min()) for s in scores) / 10)) if scores else 0.0
    high = 10 * math.ceil(max(float(s.max()) for s in scores) / 10 + 0.05) if scores else 100.0
    if tau_max is not None:
        if tau_max <= low:
            raise OffdiffError(f"tau_max {tau_max:g} must be above the profiles' left end, {low:g}")
        high = tau_max
    return np.linspace(low, max(high, low + 10), points) / 100


def performance_profiles(matrices: ScoreMatrices, taus: np.ndarray, reps: int,
                         seed: int) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Per algorithm, the fraction of runs scoring above each tau (rliable's score distribution) and its CI."""
    def profile(scores: np.ndarray) -> np.ndarray:
        return score_distribution(scores, taus)

    return {a: _bootstrap(s / 100, profile, reps, seed) for a, s in matrices.scores.items()}


def iqm_per_step(scores: np.ndarray) -> np.ndarray:
    """IQM over runs and tasks at each step of a (runs, tasks, steps) array: rliable's `aggregate_iqm` per step,
    vectorized."""
    return scipy.stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)


def sample_efficiency(curves: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, list[Estimate]]:
    """Per algorithm, the IQM (0-100 scale) with its CI at each step of its (runs, tasks, steps) score array."""
    out = {}
    for algorithm, scores in curves.items():
        point, ci = _bootstrap(scores / 100, iqm_per_step, reps, seed)
        out[algorithm] = [_estimate(point, ci, i, 100.0) for i in range(len(point))]
    return out


def _mean(scores: np.ndarray) -> np.ndarray:
    return np.array([metrics.aggregate_mean(scores)])


def seeds_mean(scores: np.ndarray, reps: int, seed: int) -> Estimate:
    """The mean (0-100 scale) of one task's per-seed scores, with its 95% percentile bootstrap CI over seeds."""
    point, ci = _bootstrap(np.asarray(scores, dtype=float)[:, None] / 100, _mean, reps, seed)
    return _estimate(point, ci, 0, 100.0)
