"""Collate rounds of `offdiff bench speed --reference ...` into one Markdown table: per figure with a reference,
the reference and offdiff's figures of each round in each mode the rounds measured, and the median and range
of the ratios.

    python benchmarks/speed_rounds.py results/speed/cpu-2threads-run*.json
    python benchmarks/speed_rounds.py results/speed/pairs/dql-offdiff-*.json   # compile-only rounds
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

MODES = ("eager", "compile")


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _key(row: dict) -> tuple[str, str, str]:
    return row["algo"], row["measure"], row["label"]


def collate(paths: list[Path]) -> str:
    rounds = [json.loads(p.read_text())["results"] for p in paths]
    rows = [r for results in rounds for r in results if r["reference"]]
    keys = list(dict.fromkeys(_key(r) for r in rows))
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    lines = ["| figure | official | " + " | ".join(f"offdiff {m}" for m in modes) + " | "
             + " | ".join(f"{m} / official" for m in modes) + " | goal |",
             "|---" * (3 + 2 * len(modes)) + "|"]
    for key in keys:
        refs, values, ratios = [], {m: [] for m in modes}, {m: [] for m in modes}
        for results in rounds:
            mine = [r for r in results if _key(r) == key and r["reference"]]
            if mine:
                refs.append(mine[0]["reference"])
            for r in mine:
                values[r["mode"]].append(r["value"])
                ratios[r["mode"]].append(r["ratio_to_reference"])
        first = next(r for r in rows if _key(r) == key)
        cells = [" / ".join(map(_fmt, refs))] + [" / ".join(map(_fmt, values[m])) or "-" for m in modes]
        cells += [f"{statistics.median(v):.2f}x ({min(v):.2f}–{max(v):.2f})" if v else "-"
                  for v in (ratios[m] for m in modes)]
        lines.append(f"| {' '.join(key)} ({first['unit']}) | " + " | ".join(cells) + f" | {first['goal_ratio']:g}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(collate([Path(p) for p in sys.argv[1:]]), end="")
