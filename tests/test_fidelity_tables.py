"""The committed fidelity verdicts are what `decide.py` computes from the committed scores, and the tables
written by hand (README, results/fidelity/ABOUT.md) copy them: a rerun, a new seed or a hand edit cannot leave a
stale number behind."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fidelity import decide  # noqa: E402

FIDELITY = Path("results/fidelity")

ALGORITHMS = {"Diffusion-QL": "dql", "DTQL": "dtql", "EDA": "eda"}
SUMMARIES = {1: FIDELITY / "summary.md", 2: FIDELITY / "summary_last2.md"}


def _regenerated(monkeypatch, tmp_path: Path, *args: str) -> str:
    """decide.py's output for `args`, run from the repository root (its comparison column names folders as given)."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "table.md"
    decide.main([*args, "--out", str(out)])
    return out.read_text()


def _cells() -> list[Path]:
    return sorted(p.parent for p in (ROOT / FIDELITY).glob("*/decision.md"))


@pytest.mark.parametrize("last", sorted(SUMMARIES))
def test_the_committed_summary_is_decides_output(monkeypatch, tmp_path, capsys, last):
    csvs = [FIDELITY / "scores.csv", *(cell.relative_to(ROOT) / "scores.csv" for cell in _cells())]
    text = _regenerated(monkeypatch, tmp_path, *map(str, csvs), "--last", str(last))
    assert text == (ROOT / SUMMARIES[last]).read_text(), f"regenerate {SUMMARIES[last]} with decide.py"


@pytest.mark.parametrize("cell", _cells(), ids=lambda p: p.name)
def test_each_cells_decision_is_decides_output(monkeypatch, tmp_path, capsys, cell):
    for last, name in ((1, "decision.md"), (2, "decision_last2.md")):
        text = _regenerated(monkeypatch, tmp_path, str(cell / "scores.csv"), "--last", str(last))
        assert text == (cell / name).read_text(), f"regenerate {cell.name}/{name} with decide.py"


def _summary_rows(last: int) -> dict[tuple[str, str, str], list[str]]:
    """(comparison folder, algorithm, task) -> the summary's cells."""
    rows = {}
    for line in (ROOT / SUMMARIES[last]).read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 13 or cells[0] in ("comparison", ":---"):
            continue
        rows[(cells[0], cells[2], _env(cells[1]))] = cells
    return rows


def _env(dataset: str) -> str:
    """The env of a dataset name: `local/walker2d/medium-v0` or a file's stem, e.g. `walker2d-medium-42`."""
    return dataset.split("/")[1] if "/" in dataset else dataset.split("-")[0]


def _copied_rows(doc: Path, anchor: str) -> list[list[str]]:
    """The cells of the first table after `anchor` in `doc`."""
    text = (ROOT / doc).read_text()
    section = text[text.index(anchor):]
    table = section[section.index("| comparison"):]
    table = table[:table.index("\n\n")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def _current(rows: dict[tuple[str, str, str], list[str]], algorithm: str, task: str) -> list[str]:
    """The one current comparison of `algorithm` on `task`: not the superseded first cell (this folder's root)."""
    found = [cells for (cell, algo, on), cells in rows.items()
             if (algo, on) == (algorithm, task) and cell != str(FIDELITY)]
    assert len(found) == 1, f"{len(found)} current comparisons of {algorithm} on {task}"
    return found[0]


@pytest.mark.parametrize(("doc", "anchor"), [("README.md", "**Fidelity**"),
                                             (FIDELITY / "ABOUT.md", "## Every comparison so far")])
def test_the_hand_written_fidelity_tables_copy_the_summaries(doc, anchor):
    summaries = {last: _summary_rows(last) for last in SUMMARIES}
    rows = _copied_rows(doc, anchor)
    assert rows, f"{doc}'s fidelity table has rows"
    for row in rows:
        name, task = re.match(r"(\S+), (\w+)", row[0]).groups()
        last = 2 if "last two" in row[0] else 1
        if "(this folder)" in row[0]:
            summary = summaries[last][(str(FIDELITY), ALGORITHMS[name], task.lower())]
        else:
            summary = _current(summaries[last], ALGORITHMS[name], task.lower())
        # Scores are copied whole (mean ± std) or as the mean alone; a verdict may carry a note or bold.
        scores = [summary[i] if "±" in row[i - 2] else summary[i].split(" ± ")[0] for i in (4, 5)]
        computed = [summary[3].split(" / ")[0], *scores, *summary[6:9], *summary[9:12]]
        copied = [row[1], *row[2:7], row[7].split(" ")[0], row[8].strip("*"), row[9]]
        assert [c.replace("−", "-") for c in copied] == computed, f"{doc}: row {row[0]!r} against {SUMMARIES[last]}"
