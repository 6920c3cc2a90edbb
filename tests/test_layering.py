"""The rooms' import rules (docs: DESIGN.md, issue 20): nothing outside `offdiff/train/` imports from it except the
command-line modules, the harness and the benchmark entry points; `offdiff/analysis` never imports it. Imports are
read with `ast`, those inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("offdiff", "algorithms", "benchmarks", "examples")
TRAIN = "offdiff.train"
# Who may import offdiff.train: the CLI modules (every cli.py; explain.py prints `train --dry-run` and `algos NAME`),
# the harness (it runs the runner) and the benchmark entry points.
ALLOWED = ("offdiff/explain.py", "offdiff/harness/", "offdiff/bench/", "benchmarks/")
NEVER = ("offdiff/analysis/",)  # not even its cli.py


def imported(path: Path, package: list[str]) -> set[str]:
    """The absolute module names `path` (in `package`) imports, `from X import Y` counting X and X.Y."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def violations(root: Path) -> list[str]:
    """`FILE imports MODULE` for every import of offdiff.train that the rules forbid, under `root`."""
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith("offdiff/train/"):
                continue
            allowed = (rel.startswith(ALLOWED) or rel.endswith("/cli.py")) and not rel.startswith(NEVER)
            names = imported(path, list(path.relative_to(root).parent.parts))
            bad = sorted(n for n in names if n == TRAIN or n.startswith(TRAIN + "."))
            if bad and not allowed:
                found.append(f"{rel} imports {bad[0]}")
    return sorted(found)


def test_only_the_cli_harness_and_benchmarks_import_train():
    assert violations(REPO) == []


def test_a_planted_import_is_caught(tmp_path):
    files = {
        "offdiff/analysis/cli.py": "def f():\n    from offdiff.train.runner import plan\n",  # lazy, in a CLI module
        "offdiff/data/bad.py": "from offdiff import train\n",
        "offdiff/eval/rel.py": "from ..train import load\n",
        "algorithms/plugin/__init__.py": "import offdiff.train.compile\n",
        "offdiff/harness/ok.py": "from offdiff.train.runner import train\n",
        "offdiff/collect/cli.py": "from offdiff.train.runner import train\n",
        "offdiff/train/runner.py": "from offdiff.train.protocol import Protocol\n",
        "offdiff/records.py": "from offdiff.io import writing\nimport offdiff.trainer_notes\n",
        "benchmarks/speed.py": "from offdiff.train.compile import compile_steps\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert violations(tmp_path) == [
        "algorithms/plugin/__init__.py imports offdiff.train.compile",
        "offdiff/analysis/cli.py imports offdiff.train.runner", "offdiff/data/bad.py imports offdiff.train",
        "offdiff/eval/rel.py imports offdiff.train",
    ]
