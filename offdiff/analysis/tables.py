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


def _average_row(label: str, group: Sequence[str], cells: dict[tuple[str, str], Cell], algorithms: Sequence[str],
                 fmt: str) -> list[str]:
    """The mean over `group` of each algorithm's per-task means (— unless it has every task), best in bold."""
    means = {a: sum(cells[t, a].mean for t in group) / len(group) for a in algorithms
             if all((t, a) in cells for t in group)}
    top = max(round(m, 1) for m in means.values()) if len(means) > 1 else None
    texts = []
    for a in algorithms:
        text = MISSING[fmt] if a not in means else f"{means[a]:.1f}"
        if a in means and round(means[a], 1) == top:
            text = f"**{text}**" if fmt == "md" else rf"\textbf{{{text}}}"
        texts.append(text)
    return [label, *texts]


def per_task_table(view: pd.DataFrame, tasks: Sequence[str], algorithms: Sequence[str], fmt: str,
                   notes: Sequence[str], domains: dict[str, str] | None = None) -> str:
    """The tasks x algorithms table of `view` (algorithm, dataset, seed, score) as Markdown or LaTeX: tasks
    grouped by domain (`domains`, task -> domain; tasks of one domain are adjacent), each domain of two tasks
    or more closed by its average row when there are several domains, and the average over all tasks last."""
    cells = task_cells(view)
    most = max((c.n for c in cells.values()), default=0)
    escape = md_escape if fmt == "md" else tex_escape
    domains = domains or {}
    groups: dict[str, list[str]] = {}
    for task in tasks:
        groups.setdefault(domains.get(task, ""), []).append(task)
    rows: list[list[str]] = []
    rules = set()  # rows that a LaTeX \midrule goes above
    for domain, group in groups.items():
        if rows:
            rules.add(len(rows))
        for task in group:
            present = [cells[task, a] for a in algorithms if (task, a) in cells]
            top = max(round(c.mean, 1) for c in present) if len(present) > 1 else None  # bold needs a rival
            rows.append([escape(task), *(_cell_text(cells.get((task, a)), top, most, fmt) for a in algorithms)])
        if len(groups) > 1 and len(group) > 1:
            rules.add(len(rows))
            rows.append(_average_row(f"Average ({escape(domain)}, {len(group)} tasks)", group, cells, algorithms,
                                     fmt))
    if len(tasks) > 1:
        rules.add(len(rows))
        label = f"Average (all {len(tasks)} tasks)" if len(groups) > 1 else f"Average ({len(tasks)} tasks)"
        rows.append(_average_row(label, tasks, cells, algorithms, fmt))
    header = ["Task", *map(escape, algorithms)]
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * len(algorithms)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return _with_notes(lines, notes)
    lines = [*(f"% {n}" for n in notes), "% needs \\usepackage{booktabs}",
             rf"\begin{{tabular}}{{l{'c' * len(algorithms)}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for i, r in enumerate(rows):
        lines += [r"\midrule"] * (i in rules) + [" & ".join(r) + r" \\"]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"


def _with_notes(table: list[str], notes: Sequence[str]) -> str:
    """A Markdown table (left out when it has no rows) followed by its notes."""
    return "\n\n".join(["\n".join(table)] * (len(table) > 2) + list(notes)) + "\n"


def _interval_text(e: Estimate, digits: int) -> str:
    text = f"{e.point:.{digits}f}"
    return text if e.low is None else f"{text} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


LOWER_IS_BETTER = {"Optimality gap"}


def _metric_header(metric: str, fmt: str) -> str:
    return metric + ({"md": " ↓", "tex": r" $\downarrow$"}[fmt] if metric in LOWER_IS_BETTER else "")


def aggregates_table(estimates: dict[str, dict[str, Estimate]], seeds: dict[str, list[int]], n_tasks: int, fmt: str,
                     notes: Sequence[str]) -> str:
    """IQM, mean, median and optimality gap [95% CI] per algorithm, with its runs x tasks, as Markdown or LaTeX."""
    header = ["Algorithm", *(_metric_header(m, fmt) for m in METRICS), "Runs × tasks" if fmt == "md" else
              r"Runs $\times$ tasks"]
    times = " × " if fmt == "md" else r" $\times$ "
    escape = md_escape if fmt == "md" else tex_escape
    rows = [[escape(a), *(_interval_text(row[m], 1) for m in METRICS), f"{len(seeds[a])}{times}{n_tasks}"]
            for a, row in estimates.items()]
    return _table(header, rows, fmt, notes)


def _table(header: list[str], rows: list[list[str]], fmt: str, notes: Sequence[str], align: str = "") -> str:
    """A plain table: Markdown (left-aligned first column, numbers right) or LaTeX (booktabs, notes as comments)."""
    align = align or "l" + "r" * (len(header) - 1)
    if fmt == "md":
        marks = {"l": ":---", "r": "---:", "c": ":---:"}
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[c] for c in align) + "|"]
        return _with_notes(lines + ["| " + " | ".join(r) + " |" for r in rows], notes)
    lines = [*(f"% {n}" for n in notes), "% needs \\usepackage{booktabs}", rf"\begin{{tabular}}{{{align}}}",
             r"\toprule", " & ".join(header) + r" \\", r"\midrule", *(" & ".join(r) + r" \\" for r in rows),
             r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


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


def improvement_table(pairs: dict[tuple[str, str], Estimate], fmt: str, notes: Sequence[str]) -> str:
    """P(X > Y) [95% CI] for each pair, as Markdown or LaTeX."""
    escape = md_escape if fmt == "md" else tex_escape
    header = ["X", "Y", "P(X > Y) [95% CI]" if fmt == "md" else r"$P(X > Y)$ [95\% CI]"]
    rows = [[escape(x), escape(y), _interval_text(e, 2)] for (x, y), e in pairs.items()]
    return _table(header, rows, fmt, notes, align="llr")


def improvement_csv(pairs: dict[tuple[str, str], Estimate]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["x", "y", "probability", "ci_low", "ci_high"])
    for (x, y), e in pairs.items():
        low, high = ("", "") if e.low is None else (f"{e.low:.4f}", f"{e.high:.4f}")
        writer.writerow([x, y, f"{e.point:.4f}", low, high])
    return buffer.getvalue()


def task_scores_csv(views: dict[str, pd.DataFrame], tasks: Sequence[str], algorithms: Sequence[str],
                    domains: dict[str, str]) -> str:
    """The per-task tables' cells (mean, population std, seeds) of each view (e.g. final, best), as a CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["task", "domain", "algorithm", "view", "mean", "std", "seeds"])
    cells = {name: task_cells(view) for name, view in views.items()}
    for task in tasks:
        for algorithm in algorithms:
            for name in views:
                c = cells[name].get((task, algorithm))
                if c is not None:
                    writer.writerow([task, domains.get(task, ""), algorithm, name, f"{c.mean:.4f}", f"{c.std:.4f}",
                                     c.n])
    return buffer.getvalue()
