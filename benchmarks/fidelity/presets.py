"""offdiff's task preset against the release's own per-task table (e.g. DTQL's `main.py::offline_hyperparameters`).

The table is read with `ast.literal_eval`, without running the release's script. The check compares the
preset (the paper's defaults plus the task's preset, before `--steps` and `--set`) with every entry of the table
for the task (`<task>-vN`), column by column, in offdiff's units; it reports, it does not stop the run: a
difference is either a preset to fix or a choice offdiff documents (the plugin READMEs).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from fidelity.adapter import Adapter
from fidelity.release import Checkout
from offdiff.algorithm import Algorithm
from offdiff.config import apply_overrides
from offdiff.errors import OffdiffError


def read_table(path: Path, name: str) -> dict[str, dict[str, Any]]:
    """The literal dict assigned to `name` at the top level of the Python file `path`."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError) as exc:
        raise OffdiffError(f"cannot read the release's table {name} in {path} ({exc})") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise OffdiffError(f"{path} has no table {name!r}: not the release the adapter expects")


def compare_preset(adapter: type[Adapter], checkout: Checkout, plugin: type[Algorithm], task: str) -> dict[str, Any]:
    """{"table", "entries": the table's keys for `task`, "differences": {"<key>:<column>": {field, offdiff,
    release}}}; no table: {"table": None}."""
    if adapter.table is None:
        return {"table": None}
    file, name = adapter.table
    table = read_table(checkout.path / file, name)
    entries = {key: row for key, row in table.items() if re.fullmatch(rf"{re.escape(task)}-v\d+", key)}
    preset = apply_overrides(plugin.Config(), plugin.preset(task), origin=f"{plugin.name} preset for {task}")
    differences = {}
    for key, row in sorted(entries.items()):
        for column, value in row.items():
            if column in adapter.table_columns:
                field, convert = adapter.table_columns[column]
                release, mine = convert(value), getattr(preset, field)
                if release != mine:
                    differences[f"{key}:{column}"] = {"field": field, "offdiff": mine, "release": release}
    return {"table": f"{file}:{name}", "entries": sorted(entries), "differences": differences}


def describe(check: dict[str, Any], task: str) -> str:
    """One line for the run's start."""
    if check["table"] is None:
        return "the release has no per-task table to check the preset against"
    if not check["entries"]:
        return f"the release's table {check['table']} has no entry for {task}"
    where = f"{check['table']} {', '.join(check['entries'])}"
    if not check["differences"]:
        return f"offdiff's preset for {task} agrees with the release's table ({where})"
    found = "; ".join(f"{d['field']} offdiff {d['offdiff']!r} vs {k} {d['release']!r}"
                      for k, d in check["differences"].items())
    return f"offdiff's preset for {task} differs from the release's table ({where}): {found}"
