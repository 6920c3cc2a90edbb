"""Conventions every `offdiff` command follows: defaults shown in `--help`, examples in each command's epilog,
lists given comma- or space-separated, and a quiet end when the output pipe closes (`offdiff ... | head`)."""

from __future__ import annotations

import argparse
import os
import sys

EXAMPLES = {
    "train": """offdiff train --algo dql --dataset toy:four_corners --steps 2000
  offdiff train --algo eda --dataset minari:mujoco/hopper/medium-v0 --set beta=0.1 --seed 1
  offdiff train --algo dql --dataset hdf5:/data/hopper-medium-v2.hdf5 --eval-env Hopper-v5 --keep final""",
    "algos": "offdiff algos",
    "data list": "offdiff data list\n  offdiff data list --json",
    "data info": "offdiff data info minari:mujoco/hopper/medium-v0\n  offdiff data info toy:four_corners --json",
    "data fetch": "offdiff data fetch mujoco/hopper/medium-v0 --timeout 600",
    "data collect": """offdiff data collect Hopper-v5
  offdiff data collect InvertedDoublePendulum-v5 --kinds random,expert --episodes 100 --seed 1""",
    "aggregate": """offdiff aggregate runs/quickstart                  # writes results/quickstart/
  offdiff aggregate --from-csv results/quickstart/scores.csv --out results/quickstart""",
    "grid submit": """offdiff grid submit benchmarks/grids/quickstart.yaml --profile slurm/profiles/local.yaml
  offdiff grid submit benchmarks/grids/quickstart.yaml --profile slurm/profiles/example.yaml --dry-run""",
    "grid resubmit": "offdiff grid resubmit benchmarks/grids/quickstart.yaml --profile slurm/profiles/example.yaml",
    "grid status": """offdiff grid status benchmarks/grids/quickstart.yaml
  offdiff grid status benchmarks/grids/quickstart.yaml --watch 60
  offdiff grid status benchmarks/grids/quickstart.yaml --json""",
    "grid cancel": "offdiff grid cancel benchmarks/grids/quickstart.yaml",
    "bench speed": """offdiff bench speed --quick
  offdiff bench speed --modes eager,compile --threads 2 --out speed.json""",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs as written; every option with a default says it, unless its help already does."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = any(default is v for v in (None, False, argparse.SUPPRESS)) or default == []  # `is`: 0 is shown
        if not action.option_strings or "default" in text or unset:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def names(values: list[str] | str) -> list[str]:
    """A list option given as `a,b c` (commas, spaces or both) -> [a, b, c], duplicates dropped."""
    values = [values] if isinstance(values, str) else values
    return list(dict.fromkeys(n for v in values for n in v.split(",") if n))


def table(header: list[str], rows: list[list[object]]) -> str:
    """Columns aligned with two spaces; numbers right-aligned."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True))
                     .rstrip() for r in cells)


def subcommands(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (command path, parser) under `parser`, e.g. ("grid status", ...)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{path} {name}".strip(), sub))
                found += subcommands(sub, f"{path} {name}".strip())
    return found


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Apply the conventions to `parser` and all its subcommands."""
    for p in [parser, *(sub for _, sub in subcommands(parser))]:
        p.formatter_class = HelpFormatter
    for path, sub in subcommands(parser):
        if not sub.epilog and path in EXAMPLES:
            sub.epilog = "examples:\n  " + EXAMPLES[path]
    return parser


def quiet_broken_pipe() -> int:
    """After the reader of stdout went away (`| head`): no traceback, no error at exit; exit status 141 as for
    SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141
