"""`offdiff bench plan`: its generated grid is a real one of the size it reports, and the command writes its figures
(no timing is asserted: the figures are measurements, README Speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from offdiff.bench.plan import write_grid
from offdiff.cli import main
from offdiff.harness.grid import expand, load_grid
from offdiff.registry import plugins


def test_the_planned_grid_covers_every_registered_algorithm_with_the_runs_it_reports(tmp_path):
    grid, profile, runs = write_grid(tmp_path, 40)
    cells = expand(load_grid(grid), tmp_path / "runs")
    assert len(cells) == runs >= 40 and profile.exists()
    assert {c.planned.request.algo for c in cells} == set(plugins())
    assert not (tmp_path / "runs").exists(), "planning writes nothing"


@pytest.mark.slow
def test_bench_plan_writes_three_figures_and_their_ratios(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["bench", "plan", "--runs", "10", "--repeats", "1", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    commands = [r["command"] for r in figures["results"]]
    assert commands[:2] == ["import torch", "offdiff --help"] and commands[2].startswith("grid submit --dry-run (")
    assert figures["results"][0]["ratio_to_import_torch"] == 1.0
    assert all(r["seconds"] > 0 for r in figures["results"]) and "× bare import torch" in capsys.readouterr().out


def test_bench_plan_rejects_nonsense(capsys):
    assert main(["bench", "plan", "--repeats", "0"]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err


def test_planning_imports_no_torch_dynamo():
    """torch._dynamo takes as long to import as torch: only compiling needs it (offdiff.lazy.compile_disabled)."""
    code = ("import sys\nfrom offdiff.registry import get_algorithm, plugins\n"
            "for name in plugins(): get_algorithm(name)\n"
            "import offdiff.harness.submit\nprint(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]"
