"""Can the comparison decide? offdiff against each official twin, per dataset, by the issue's rule.

    python benchmarks/fidelity/decide.py results/fidelity/scores.csv [--last 1] [--out results/fidelity/decision.md]
    python benchmarks/fidelity/decide.py results/fidelity/*/scores.csv --out results/fidelity/summary.md

For each dataset and each pair `<algo>` / `<algo>-official` in an `offdiff aggregate` scores CSV, over the
finished runs: the mean score of each side (per run, the mean of its last `--last` evaluations), the ratio of
means offdiff / official, and the 95% percentile-bootstrap CI of the difference of means (seeds resampled
within each side). The comparison **decides** when each side has at least 5 seeds (the issue's minimum: a
bootstrap over fewer seeds understates the spread, and over one seed has none) and that CI is narrower than
±15% of the official mean; then offdiff **matches** when the ratio is >= 0.9 and the CI contains 0. Where it
does not decide, the seeds per side it would take, at the seeds' spread seen so far, are estimated from the
CI's half-width (it shrinks as 1/sqrt(seeds)); with one seed on a side there is no spread to estimate from.

The rule asks that the CI be narrow enough, not that it lie within the tolerance: a CI of [−14, +1] against ±8
decides and matches (it contains 0), yet leaves a 14-point gap possible. So each row also says whether the whole CI
lies inside ±15% of the official mean (**within ±15%**: an equivalence reading, stricter than the rule and not part
of its verdict), which rules out any gap larger than the tolerance at 95%.

Beside the rule, each row gives the two-sided permutation p-value of the difference of means (exact over every
split of the pooled runs into the two sides' sizes, sampled when there are more than 20,000 splits): how often
a difference at least as large arises when the labels offdiff / official are exchangeable. At 5 seeds per side
a percentile-bootstrap CI is too narrow (it ignores that each side's spread is itself estimated from 5 runs), so
a CI that just excludes 0 with a p-value of 0.1 says "not shown", not "differs". The verdict stays the rule's.

Given several CSVs (one comparison each, e.g. every folder of `results/fidelity/`), the pairs are found in each
CSV on its own (two folders may hold one dataset name collected twice) and the table's first column names the
CSV's folder, as given.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from offdiff.analysis.scores import read_scores
from offdiff.errors import OffdiffError
from offdiff.io import atomic_write_bytes

TOLERANCE = 0.15  # the CI of the difference must lie within ±15% of the official mean
RATIO = 0.9
MIN_SEEDS = 5  # per side, before a comparison may decide
OFFICIAL = "-official"


@dataclass(frozen=True)
class Pair:
    dataset: str
    algorithm: str
    ours: np.ndarray
    theirs: np.ndarray
    low: float
    high: float
    p_value: float

    @property
    def ratio(self) -> float:
        return float(self.ours.mean() / self.theirs.mean()) if self.theirs.mean() else math.nan

    @property
    def target(self) -> float:
        return TOLERANCE * abs(float(self.theirs.mean()))

    @property
    def seeds(self) -> int:
        return min(len(self.ours), len(self.theirs))

    @property
    def decides(self) -> bool:
        return self.seeds >= MIN_SEEDS and (self.high - self.low) / 2 < self.target

    @property
    def matches(self) -> bool:
        return self.ratio >= RATIO and self.low <= 0 <= self.high

    @property
    def within_tolerance(self) -> bool:
        """The whole CI inside ±15% of the official mean: no gap beyond the tolerance, at 95%."""
        return self.seeds >= MIN_SEEDS and -self.target <= self.low and self.high <= self.target

    @property
    def seeds_needed(self) -> int | None:
        """Seeds per side for a CI half-width below the target at the spread seen (rounded up, at least
        MIN_SEEDS); None with one seed on a side, which shows no spread."""
        n, half = self.seeds, (self.high - self.low) / 2
        if n < 2:
            return None
        return max(MIN_SEEDS, n, math.ceil(n * (half / self.target) ** 2)) if self.target else MIN_SEEDS


def difference_ci(ours: np.ndarray, theirs: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """95% percentile-bootstrap CI of mean(ours) - mean(theirs), each side resampled on its own."""
    rng = np.random.default_rng(seed)
    a = ours[rng.integers(0, len(ours), (reps, len(ours)))].mean(axis=1)
    b = theirs[rng.integers(0, len(theirs), (reps, len(theirs)))].mean(axis=1)
    low, high = np.percentile(a - b, [2.5, 97.5])
    return float(low), float(high)


def permutation_p(ours: np.ndarray, theirs: np.ndarray, splits: int = 20000, seed: int = 0) -> float:
    """Two-sided permutation p-value of mean(ours) − mean(theirs): the share of splits of the pooled scores into
    groups of the two sizes whose |difference of means| is at least the observed one (all splits when there are
    at most `splits` of them, else `splits` random ones)."""
    pooled, n = np.concatenate([ours, theirs]), len(ours)
    if math.comb(len(pooled), n) <= splits:
        chosen = np.array(list(itertools.combinations(range(len(pooled)), n)))
    else:
        chosen = np.argsort(np.random.default_rng(seed).random((splits, len(pooled))), axis=1)[:, :n]
    first = np.zeros((len(chosen), len(pooled)), dtype=bool)
    np.put_along_axis(first, chosen, True, axis=1)
    differences = (pooled * first).sum(axis=1) / n - (pooled * ~first).sum(axis=1) / (len(pooled) - n)
    observed = abs(ours.mean() - theirs.mean())
    return float(np.mean(np.abs(differences) >= observed * (1 - 1e-9)))


def run_scores(frame: pd.DataFrame, last: int) -> pd.DataFrame:
    """Per finished run (algorithm, dataset, seed): the mean of its last `last` evaluations of its last stage."""
    done = frame[frame.done & frame.normalized.notna()]
    final_stage = done.groupby("run_dir").stage_index.transform("max")
    tail = done[done.stage_index == final_stage].sort_values("step").groupby("run_dir").tail(last)
    return tail.groupby(["algorithm", "dataset", "seed"], as_index=False).normalized.mean()


def pairs(frame: pd.DataFrame, last: int, reps: int = 10000, seed: int = 0) -> list[Pair]:
    scores = run_scores(frame, last)
    out = []
    for (dataset, algorithm), rows in scores.groupby(["dataset", "algorithm"]):
        if algorithm.endswith(OFFICIAL):
            continue
        twin = scores[(scores.dataset == dataset) & (scores.algorithm == algorithm + OFFICIAL)]
        if twin.empty:
            continue
        ours, theirs = rows.normalized.to_numpy(float), twin.normalized.to_numpy(float)
        out.append(Pair(dataset, algorithm, ours, theirs, *difference_ci(ours, theirs, reps, seed),
                        permutation_p(ours, theirs)))
    if not out:
        raise OffdiffError("no pair <algo> / <algo>-official with finished runs on one dataset in the CSV")
    return out


def table(found: list[Pair], last: int, cells: list[str] | None = None) -> str:
    """The Markdown table of `found`; with `cells` (one name per pair), a first column naming where each is from."""
    lines = ["| dataset | algorithm | seeds (offdiff / official) | offdiff | official | ratio | 95% CI of the "
             "difference | ±15% of official | decides | matches | within ±15% | seeds to decide | permutation p |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|:---|:---|:---|---:|---:|"]
    for p in found:
        row = [p.dataset, p.algorithm, f"{len(p.ours)} / {len(p.theirs)}",
               f"{p.ours.mean():.1f} ± {p.ours.std():.1f}", f"{p.theirs.mean():.1f} ± {p.theirs.std():.1f}",
               f"{p.ratio:.2f}", f"[{p.low:+.1f}, {p.high:+.1f}]", f"±{p.target:.1f}",
               "yes" if p.decides else "no", ("yes" if p.matches else "no") if p.decides else "—",
               "yes" if p.within_tolerance else "no",
               "—" if p.decides else str(p.seeds_needed or "unknown (1 seed)"), f"{p.p_value:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    if cells:
        lines = [f"| {first} {line}" for first, line in zip(["comparison", "", *cells], lines, strict=True)]
        lines[1] = "|:---" + lines[1][3:]  # the separator row: `|  |:---|` as `|:---|:---|`
    what = "the last evaluation" if last == 1 else f"the mean of the last {last} evaluations"
    note = (f"Per run: {what} (normalized). Scores: mean ± std over seeds. The comparison decides when the 95% "
            f"bootstrap CI of the difference of means (offdiff − official) is narrower than ±15% of the official "
            f"mean and each side has ≥ {MIN_SEEDS} seeds; offdiff matches when, besides, the ratio of means is "
            f"≥ {RATIO} and the CI contains 0. Within ±15%: the whole CI lies inside ±15% of the official mean (with ≥ "
            f"{MIN_SEEDS} seeds per side), which rules out a larger gap at 95%; stricter than the rule, and not part "
            f"of its verdict. Seeds to decide: per side, at the spread seen so far (the CI narrows "
            f"as 1/√seeds). Permutation p: two-sided, of the difference of means, beside the rule (not part of it): "
            f"how often the sides' labels, shuffled, give a gap at least this large.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores", type=Path, nargs="+",
                        help="an `offdiff aggregate` scores.csv holding both sides (several: one comparison each)")
    parser.add_argument("--last", type=int, default=1, help="evaluations averaged per run (default: the last)")
    parser.add_argument("--out", type=Path, help="write the table here (Markdown) as well as printing it")
    args = parser.parse_args(argv)
    if args.last < 1:
        raise OffdiffError(f"--last must be at least 1, got {args.last}")
    found = []
    for path in args.scores:
        try:
            found += [(path, pair) for pair in pairs(read_scores(path), args.last)]
        except OffdiffError as exc:
            raise OffdiffError(f"{path}: {exc}") from None
    cells = [str(path.parent) for path, _ in found] if len(args.scores) > 1 else None
    text = table([pair for _, pair in found], args.last, cells)
    print(text, end="")
    if args.out:
        atomic_write_bytes(args.out, text.encode())


if __name__ == "__main__":
    try:
        main()
    except OffdiffError as exc:
        sys.exit(f"decide: error: {exc}")
