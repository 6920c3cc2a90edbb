"""The committed quickstart scores re-train within a tolerance: float rounding differs between CPUs and library
versions, so a re-trained run matches the committed CSV to the byte only on the machine and versions that made it
(the README says so); elsewhere it must agree within `TOLERANCE` normalized points."""

from __future__ import annotations

from pathlib import Path

import pytest

from offdiff.analysis.scores import read_scores
from offdiff.harness.grid import expand, load_grid
from offdiff.io import read_jsonl
from offdiff.train.runner import train

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 0.5  # normalized points; measured CPU-to-CPU differences are near 1e-3, a changed algorithm is not


@pytest.mark.slow
def test_a_committed_quickstart_run_retrains_within_tolerance(tmp_path):
    """Diffusion-QL on grid25_hard, seed 0: a continuous score (the four-corner bandit's moves in steps of 5)."""
    cells = expand(load_grid(REPO / "benchmarks/grids/quickstart.yaml"), tmp_path / "runs")
    (cell,) = [c for c in cells if c.planned.request.algo == "dql" and c.planned.request.seed == 0
               and c.planned.request.source == "toy:grid25_hard"]
    committed = read_scores(REPO / "results/quickstart/scores.csv")
    rows = committed[committed.run_dir == f"runs/quickstart/{cell.key}"]
    assert len(rows) == 3, "the grid resolves to the committed run's folder (same config hash)"
    train(cell.planned.request, progress=False)
    evals = read_jsonl(cell.planned.run_dir.evals)
    assert [e["step"] for e in evals] == rows.step.tolist()
    assert [e["normalized_mean"] for e in evals] == pytest.approx(rows.normalized.tolist(), abs=TOLERANCE)


ABOUTS = [p for p in sorted(REPO.glob("results/**/ABOUT.md")) if p.with_name("README.md").exists()]


@pytest.mark.parametrize("about", ABOUTS, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_a_committed_readme_opens_with_its_about_as_it_is_now(about):
    """`aggregate` opens README.md with the folder's ABOUT.md; an ABOUT edited since must be folded in again
    (`offdiff aggregate --from-csv <folder>/scores.csv --out <folder> …`), or the folder's front page is stale."""
    assert about.with_name("README.md").read_text().startswith(about.read_text() + "\n## offdiff aggregate\n"), \
        f"regenerate it: offdiff aggregate --from-csv {about.parent.relative_to(REPO)}/scores.csv"
