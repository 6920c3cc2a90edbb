"""The committed fidelity verdicts are what `decide.py` computes from the committed scores, and the README's
fidelity table copies them: a rerun, a new seed or a hand edit cannot leave a stale number behind."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIDELITY = Path("results/fidelity")
spec = importlib.util.spec_from_file_location("decide", ROOT / "benchmarks" / "fidelity" / "decide.py")
decide = importlib.util.module_from_spec(spec)
sys.modules["decide"] = decide  # dataclasses look their module up
spec.loader.exec_module(decide)

ALGORITHMS = {"Diffusion-QL": "dql", "DTQL": "dtql"}
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


def _summary_rows(last: int) -> dict[tuple[str, str], list[str]]:
    """(algorithm, task) -> the summary's cells, for every comparison but the superseded first one."""
    rows = {}
    for line in (ROOT / SUMMARIES[last]).read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 13 or cells[0] in ("comparison", ":---") or cells[0] == str(FIDELITY):
            continue
        task = cells[1].split("/")[1]
        assert (cells[2], task) not in rows, f"two current comparisons of {cells[2]} on {task}"
        rows[(cells[2], task)] = cells
    return rows


def _readme_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**Fidelity**"):]
    table = section[section.index("| comparison"):]
    table = table[:table.index("\n\n")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_the_readmes_fidelity_table_copies_the_summaries():
    summaries = {last: _summary_rows(last) for last in SUMMARIES}
    readme = _readme_rows()
    assert readme, "the README's fidelity table has rows"
    for row in readme:
        name, task = re.match(r"(\S+), (\w+)", row[0]).groups()
        last = 2 if "last two" in row[0] else 1
        summary = summaries[last][(ALGORITHMS[name], task.lower())]
        copied = [row[1], *row[2:7], row[7].split(" ")[0], row[8], row[9]]
        computed = [summary[3].split(" / ")[0], *summary[4:9], summary[9], summary[10], summary[11]]
        assert [c.replace("−", "-") for c in copied] == computed, f"README row {row[0]!r} against {SUMMARIES[last]}"
