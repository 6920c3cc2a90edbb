"""Tables as text: per-task scores (Markdown and LaTeX), aggregate estimates, probability of improvement.

A per-task cell is `mean ± std (n)` over seeds (population std), best per row in bold (ties on the
shown value all bold), `—` where no run is done and `†` where a cell has fewer seeds than the fullest.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence

import pandas as pd

from offdiff.analysis.stats import METRICS, Estimate

MISSING = {"md": "—", "tex": "---"}
DAGGER = {"md": "†", "tex": r"$^\dagger$"}
_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


@dataclasses.dataclass(frozen=True)
class Cell:
    mean: float
    std: float
    n: int


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in text)


def md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def task_cells(view: pd.DataFrame) -> dict[tuple[str, str], Cell]:
    """(dataset, algorithm) -> mean, population std and count of the per-seed scores in `view`."""
    return {(d, a): Cell(float(g.mean()), float(g.std(ddof=0)), len(g))
            for (d, a), g in view.groupby(["dataset", "algorithm"], sort=True).score}


def _cell_text(cell: Cell | None, top: float | None, most: int, fmt: str) -> str:
    """`mean ± std (n)`, bold if its shown mean is the row's `top`, daggered if it has fewer than `most` seeds."""
    if cell is None:
        return MISSING[fmt]
    pm = " ± " if fmt == "md" else r" $\pm$ "
    text = f"{cell.mean:.1f}{pm}{cell.std:.1f}"
    if round(cell.mean, 1) == top:
        text = f"**{text}**" if fmt == "md" else rf"\textbf{{{text}}}"
    return f"{text} ({cell.n}){DAGGER[fmt] if cell.n < most else ''}"


def per_task_table(view: pd.DataFrame, tasks: Sequence[str], algorithms: Sequence[str], fmt: str,
                   notes: Sequence[str]) -> str:
    """The tasks x algorithms table of `view` (algorithm, dataset, seed, score) as Markdown or LaTeX."""
    cells = task_cells(view)
    most = max((c.n for c in cells.values()), default=0)
    escape = md_escape if fmt == "md" else tex_escape
    rows = []
    for task in tasks:
        present = [cells[task, a] for a in algorithms if (task, a) in cells]
        top = max(round(c.mean, 1) for c in present) if len(present) > 1 else None  # bold needs a rival
        rows.append([escape(task), *(_cell_text(cells.get((task, a)), top, most, fmt) for a in algorithms)])
    header = ["Dataset", *map(escape, algorithms)]
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * len(algorithms)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return _with_notes(lines, notes)
    lines = [*(f"% {n}" for n in notes), "% needs \\usepackage{booktabs}",
             rf"\begin{{tabular}}{{l{'c' * len(algorithms)}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"


def _with_notes(table: list[str], notes: Sequence[str]) -> str:
    """A Markdown table (left out when it has no rows) followed by its notes."""
    return "\n\n".join(["\n".join(table)] * (len(table) > 2) + list(notes)) + "\n"


def _interval_text(e: Estimate, digits: int) -> str:
    text = f"{e.point:.{digits}f}"
    return text if e.low is None else f"{text} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


def aggregates_markdown(estimates: dict[str, dict[str, Estimate]], seeds: dict[str, list[int]],
                        notes: Sequence[str]) -> str:
    lines = ["| Algorithm | " + " | ".join(METRICS) + " | Seeds |", "|:---|" + "---:|" * (len(METRICS) + 1)]
    for algorithm, row in estimates.items():
        cells = [_interval_text(row[m], 1) for m in METRICS]
        lines.append(f"| {md_escape(algorithm)} | " + " | ".join(cells) + f" | {len(seeds[algorithm])} |")
    return _with_notes(lines, notes)


def aggregates_csv(estimates: dict[str, dict[str, Estimate]], n_tasks: int,
                   seeds: dict[str, list[int]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["algorithm", "metric", "estimate", "ci_low", "ci_high", "tasks", "seeds"])
    for algorithm, row in estimates.items():
        for metric, e in row.items():
            low, high = ("", "") if e.low is None else (f"{e.low:.4f}", f"{e.high:.4f}")
            writer.writerow([algorithm, metric, f"{e.point:.4f}", low, high, n_tasks, len(seeds[algorithm])])
    return buffer.getvalue()


def improvement_markdown(pairs: dict[tuple[str, str], Estimate], notes: Sequence[str]) -> str:
    lines = ["| X | Y | P(X > Y) [95% CI] |", "|:---|:---|---:|"]
    lines += [f"| {md_escape(x)} | {md_escape(y)} | {_interval_text(e, 2)} |" for (x, y), e in pairs.items()]
    return _with_notes(lines, notes)
