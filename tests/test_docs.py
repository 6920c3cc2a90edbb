"""The docs say what the code does: docs/grids.md's example uses only real keys, and its precedence holds."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from offdiff.harness.grid import BUDGET_KEYS, ENTRY_KEYS, GRID_KEYS, PROTOCOL_KEYS, expand, load_grid
from offdiff.harness.profile import JOB_KEYS

ROOT = Path(__file__).resolve().parents[1]


def test_grids_md_example_uses_only_real_keys():
    text = (ROOT / "docs" / "grids.md").read_text()
    spec = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    assert set(spec) == set(GRID_KEYS)  # every key is shown
    assert set(spec["protocol"]) == set(PROTOCOL_KEYS)
    assert set(spec["budget"]) == set(BUDGET_KEYS)
    assert set(spec["resources"]) <= set(JOB_KEYS)
    assert all(set(e) <= set(ENTRY_KEYS) for e in spec["algorithms"] if isinstance(e, dict))


def test_grid_precedence_defaults_preset_steps_overrides(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms:\n"
                    "  - dql\n  - {name: short, algo: dql, overrides: {steps: 7}}\nbudget: {steps: 20}\n")
    plain, short = (c.planned.config for c in expand(load_grid(grid), tmp_path / "runs"))
    assert plain.steps == 20 and short.steps == 7  # budget.steps beats the defaults; overrides beat it
