"""Collate rounds of `offdiff bench speed --reference ...` into one Markdown table: per figure with a reference,
the reference and offdiff's eager and compiled figures of each round, and the median and range of the ratios.

    python benchmarks/speed_rounds.py results/speed/cpu-2threads-run*.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def collate(paths: list[Path]) -> str:
    rounds = [json.loads(p.read_text())["results"] for p in paths]
    keys = [(r["algo"], r["measure"], r["label"]) for r in rounds[0] if r["mode"] == "eager" and r["reference"]]
    lines = ["| figure | official | offdiff eager | offdiff compile | eager / official | compile / official "
             "| goal |", "|---" * 7 + "|"]
    for key in keys:
        refs, values, ratios = [], {"eager": [], "compile": []}, {"eager": [], "compile": []}
        for rows in rounds:
            for r in rows:
                if (r["algo"], r["measure"], r["label"]) == key and r["mode"] in values:
                    values[r["mode"]].append(r["value"])
                    ratios[r["mode"]].append(r["ratio_to_reference"])
                    if r["mode"] == "eager":
                        refs.append(r["reference"])
        goal = next(r["goal_ratio"] for r in rounds[0] if (r["algo"], r["measure"], r["label"]) == key)
        cells = [" / ".join(map(_fmt, refs)), " / ".join(map(_fmt, values["eager"])),
                 " / ".join(map(_fmt, values["compile"]))]
        cells += [f"{statistics.median(v):.2f}x ({min(v):.2f}–{max(v):.2f})" if v else "-"
                  for v in (ratios["eager"], ratios["compile"])]
        unit = next(r["unit"] for r in rounds[0] if (r["algo"], r["measure"], r["label"]) == key)
        lines.append(f"| {' '.join(key)} ({unit}) | " + " | ".join(cells) + f" | {goal:g}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(collate([Path(p) for p in sys.argv[1:]]), end="")
