"""benchmarks/fidelity/decide.py: whether an offdiff / official comparison can decide, by the issue's rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from offdiff.errors import OffdiffError

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("decide", ROOT / "benchmarks" / "fidelity" / "decide.py")
decide = importlib.util.module_from_spec(spec)
sys.modules["decide"] = decide  # dataclasses look their module up
spec.loader.exec_module(decide)

HEADER = ("algorithm,algo,dataset,task,seed,stage,stage_index,step,total_step,normalized,normalized_std,return,"
          "episodes,is_last,done,config_hash,run_dir")
# The issue's independent check of DTQL on Hopper: five seeds per side at 15k steps.
OURS = [10.3, 42.9, 26.4, 35.3, 48.3]
THEIRS = [30.1, 60.9, 35.0, 18.8, 57.3]


def _csv(path: Path, sides: dict[str, list[float]], early: float = 0.0) -> Path:
    lines = [HEADER]
    for label, scores in sides.items():
        for seed, score in enumerate(scores):
            run = f"runs/{label}/{seed}"
            for step, value, last in ((500, early, "false"), (1000, score, "true")):
                lines.append(f"{label},dtql,local/hopper/medium-v0,hopper-medium,{seed},main,1,{step},{step},{value},"
                             f"0,0,10,{last},true,abc,{run}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_issues_five_seeds_do_not_decide(tmp_path):
    (pair,) = decide.pairs(decide.read_scores(_csv(tmp_path / "s.csv", {"dtql": OURS, "dtql-official": THEIRS})), 1)
    assert pair.ratio == pytest.approx(32.64 / 40.42, abs=1e-3)  # the issue's 0.81
    assert -30 < pair.low < -20 and 5 < pair.high < 15  # the issue's [-26, +10]
    assert not pair.decides and pair.target == pytest.approx(0.15 * 40.42, abs=1e-2)
    assert pair.seeds_needed > 20  # at this spread, several times more seeds per side
    text = decide.table([pair], 1)
    assert "| local/hopper/medium-v0 | dtql | 5 / 5 |" in text and "| no | — |" in text


def test_a_tight_comparison_decides_and_matches_or_not(tmp_path):
    rng = np.random.default_rng(0)
    base = list(60 + rng.normal(0, 1.0, 8))
    close = decide.pairs(decide.read_scores(_csv(tmp_path / "a.csv", {"eda": base, "eda-official": base[::-1]})), 1)
    assert close[0].decides and close[0].matches and close[0].ratio == pytest.approx(1.0)
    low = [s * 0.7 for s in base]
    far = decide.pairs(decide.read_scores(_csv(tmp_path / "b.csv", {"eda": low, "eda-official": base})), 1)
    assert far[0].decides and not far[0].matches and far[0].high < 0
    assert close[0].within_tolerance and not far[0].within_tolerance  # far: a 30% gap, beyond the tolerance


def test_deciding_and_matching_is_not_the_whole_ci_within_the_tolerance(tmp_path):
    """The rule's verdict can pass a CI whose lower end lies beyond −15%; the equivalence column says so."""
    theirs = [50.0, 52.0, 48.0, 51.0, 49.0, 50.0]
    ours = [40.0, 58.0, 36.0, 55.0, 45.0, 52.0]  # mean 47.7: ratio 0.95, wide spread
    (pair,) = decide.pairs(decide.read_scores(_csv(tmp_path / "w.csv", {"dql": ours, "dql-official": theirs})), 1)
    assert pair.decides and pair.matches
    assert pair.low < -pair.target and not pair.within_tolerance
    assert "| yes | yes | no |" in decide.table([pair], 1)


def test_last_k_averages_the_final_evaluations_and_bad_input_is_one_line(tmp_path, capsys):
    path = _csv(tmp_path / "s.csv", {"dql": [40.0, 50.0], "dql-official": [40.0, 50.0]}, early=0.0)
    (pair,) = decide.pairs(decide.read_scores(path), 2)
    assert list(pair.ours) == [20.0, 25.0]  # (0 + 40) / 2, (0 + 50) / 2
    with pytest.raises(OffdiffError, match="no pair"):
        decide.pairs(decide.read_scores(_csv(tmp_path / "o.csv", {"dql": [1.0]})), 1)
    with pytest.raises(OffdiffError, match="--last"):
        decide.main([str(path), "--last", "0"])
    decide.main([str(path), "--out", str(tmp_path / "d.md")])
    assert (tmp_path / "d.md").read_text() == capsys.readouterr().out


def test_too_few_seeds_never_decide(tmp_path):
    """One seed per side gives a zero-width bootstrap CI; it must not read as a decided comparison."""
    (one,) = decide.pairs(decide.read_scores(_csv(tmp_path / "a.csv", {"dql": [38.7], "dql-official": [34.0]})), 1)
    assert one.low == one.high and not one.decides and one.seeds_needed is None
    assert "| no | — | no | unknown (1 seed) |" in decide.table([one], 1) and not one.within_tolerance
    tight = [60.0, 60.1, 59.9, 60.05]  # a narrow CI, but four seeds per side
    (four,) = decide.pairs(decide.read_scores(_csv(tmp_path / "b.csv", {"dql": tight, "dql-official": tight})), 1)
    assert (four.high - four.low) / 2 < four.target and not four.decides and four.seeds_needed == decide.MIN_SEEDS
    (five,) = decide.pairs(decide.read_scores(_csv(tmp_path / "c.csv", {"dql": [*tight, 60.0],
                                                                         "dql-official": [*tight, 60.0]})), 1)
    assert five.decides and five.matches


def test_permutation_p_counts_the_splits_at_least_as_far_apart():
    # 20 splits of six runs into two threes; only the observed one and its mirror are 3 apart: p = 2/20.
    assert decide.permutation_p(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])) == pytest.approx(0.1)
    assert decide.permutation_p(np.array([1.0, 2, 3]), np.array([1.0, 2, 3])) == 1.0
    # Stage 24's Diffusion-QL on Hopper, each run's final weights on 100 new episodes: the bootstrap CI of the
    # difference, [-0.7, -0.1], excludes 0; in 22 of the 252 splits the gap is at least as large (p = 0.087).
    ours, theirs = np.array([42.27, 42.33, 42.06, 41.76, 42.32]), np.array([42.11, 42.50, 42.74, 42.82, 42.31])
    assert decide.permutation_p(ours, theirs) == pytest.approx(22 / 252)
    # Past 20,000 splits it samples them, and still finds a clear difference clear.
    rng = np.random.default_rng(1)
    far = decide.permutation_p(rng.normal(0, 1, 15), rng.normal(3, 1, 15))
    assert far < 0.001


def test_several_csvs_are_one_comparison_each_named_by_their_folder(tmp_path, capsys):
    """Two folders may hold one dataset name collected twice: their runs must not be pooled into one pair."""
    (tmp_path / "dql-hopper").mkdir(), (tmp_path / "old").mkdir(), (tmp_path / "empty").mkdir()
    new = _csv(tmp_path / "dql-hopper" / "scores.csv", {"dql": [37.0, 37.5] * 3, "dql-official": [37.2, 37.4] * 3})
    old = _csv(tmp_path / "old" / "scores.csv", {"dql": [42.0, 42.2] * 3, "dql-official": [42.5, 42.4] * 3})
    decide.main([str(new), str(old), "--out", str(tmp_path / "summary.md")])
    rows = [line for line in (tmp_path / "summary.md").read_text().splitlines() if "| dql |" in line]
    assert [row.split(" | ")[0] for row in rows] == [f"| {tmp_path / 'dql-hopper'}", f"| {tmp_path / 'old'}"]
    assert "| 6 / 6 | 37.2 ± 0.2 | 37.3 ± 0.1 |" in rows[0] and "| 6 / 6 | 42.1 ± 0.1 | 42.5 ± 0.1 |" in rows[1]
    assert capsys.readouterr().out.startswith("| comparison | dataset |")
    assert (tmp_path / "summary.md").read_text().splitlines()[1].startswith("|:---|:---|:---|---:|")
    lonely = _csv(tmp_path / "empty" / "scores.csv", {"dql": [1.0]})
    with pytest.raises(OffdiffError, match=r"empty/scores.csv: no pair"):
        decide.main([str(new), str(lonely)])
