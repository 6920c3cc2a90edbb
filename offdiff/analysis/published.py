"""The papers' published D4RL scores (`published.yaml`) beside offdiff's measured ones: `--compare-published`.

Which datasets are compared (a documented rule, printed under the table):
- D4RL's own data: Minari's `D4RL/<env>/<name>-vN` and D4RL ids such as `hopper-medium-v2` (an HDF5
  file's stem): compared under their task key;
- Minari's `mujoco/<env>/<name>-vN`: compared, and marked, since it is a re-collection on Gymnasium's
  MuJoCo v5 environments, not the papers' D4RL -v2 data;
- anything else (locally collected, toy): not compared.
The measured score follows each paper's reporting rule: the last evaluation for `final`, the best
evaluation over training (online model selection) for `best`; it is the mean over seeds with a 95%
percentile bootstrap CI over seeds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from offdiff.analysis.stats import Estimate, seeds_mean
from offdiff.analysis.tables import md_escape, tex_escape
from offdiff.data.d4rl import is_d4rl_file_name

RULES = {"final": "last evaluation", "best": "best evaluation over training (online model selection)"}
UNVERIFIED = {"md": "‡", "tex": r"$^\ddagger$"}
OTHER_DATA = {"md": "§", "tex": r"$^\S$"}
NOTHING = "No dataset of this collection has a published score to compare with."


@dataclasses.dataclass(frozen=True)
class Paper:
    algo: str
    citation: str
    rule: str  # a key of RULES
    reporting: str
    data: str
    spread: str
    scores: dict[str, tuple[float, float | None]]
    unverified: frozenset[str]


@cache
def papers() -> dict[str, Paper]:
    """Each plugin's own paper, by registry name."""
    raw = yaml.safe_load(resources.files("offdiff.analysis").joinpath("published.yaml").read_text())
    return {algo: Paper(algo, p["citation"], p["rule"], p["reporting"], p["data"], p["spread"],
                        {task: (float(s[0]), None if s[1] is None else float(s[1])) for task, s in p["scores"].items()},
                        frozenset(p["unverified"]))
            for algo, p in raw.items()}


def data_kind(dataset: str) -> str | None:
    """'d4rl' for D4RL's own data, 'minari-mujoco' for Minari's re-collection, None for data not compared."""
    if dataset.startswith("D4RL/") or is_d4rl_file_name(dataset):  # d4rl: names and D4RL's file names
        return "d4rl"
    return "minari-mujoco" if dataset.startswith("mujoco/") else None


@dataclasses.dataclass(frozen=True)
class Row:
    task: str  # display name
    dataset: str
    key: str  # task key
    kind: str  # data_kind
    cells: dict[str, tuple[tuple[float, float | None] | None, Estimate | None, int]]  # label -> paper, ours, n


def comparison(final: pd.DataFrame, best: pd.DataFrame, datasets: dict[str, tuple[str, str]],
               algorithms: dict[str, str], reps: int, seed: int) -> list[Row]:
    """Rows of the comparison: `datasets` maps dataset id -> (display name, task key) in display order,
    `algorithms` maps display name -> registry name (only those with a paper); views use display names."""
    rows = []
    for dataset, (task, key) in datasets.items():
        kind = data_kind(dataset)
        if kind is None or not any(key in papers()[a].scores for a in algorithms.values()):
            continue
        cells = {}
        for label, algo in algorithms.items():
            paper = papers()[algo]
            view = final if paper.rule == "final" else best
            mine = view[(view.algorithm == label) & (view.dataset == task)].score.to_numpy(dtype=float)
            ours = seeds_mean(mine, reps, seed) if len(mine) else None
            cells[label] = (paper.scores.get(key), ours, len(mine))
        rows.append(Row(task, dataset, key, kind, cells))
    return rows


def _paper_text(algo: str, key: str, score: tuple[float, float | None] | None, fmt: str) -> str:
    if score is None:
        return "—" if fmt == "md" else "---"
    pm = " ± " if fmt == "md" else r" $\pm$ "
    text = f"{score[0]:.1f}" + ("" if score[1] is None else f"{pm}{score[1]:.1f}")
    return text + (UNVERIFIED[fmt] if key in papers()[algo].unverified else "")


def _ours_text(ours: Estimate | None, n: int, fmt: str) -> str:
    if ours is None:
        return "—" if fmt == "md" else "---"
    ci = "" if ours.low is None else f" [{ours.low:.1f}, {ours.high:.1f}]"
    return f"{ours.point:.1f}{ci} ({n})"


def notes(rows: Sequence[Row], algorithms: dict[str, str], left_out: Sequence[str], reps: int, seed: int,
          fmt: str) -> list[str]:
    """The sources, reporting rules and marks of the table, one line each."""
    lines = [f"{name}: {p.citation}. Reported: {p.reporting}; data: {p.data}. offdiff's score here: the "
             f"{RULES[p.rule]}, mean over seeds [95% bootstrap CI over seeds, {reps} reps, seed {seed}] (n seeds)."
             for name, p in ((n, papers()[a]) for n, a in algorithms.items())]
    if any(r.key in papers()[a].unverified for r in rows for a in algorithms.values()):
        lines.append(f"{UNVERIFIED[fmt]} recalled from the paper by the spec, not checked against it.")
    if any(r.kind == "minari-mujoco" for r in rows):
        lines.append(f"{OTHER_DATA[fmt]} Minari's re-collection on Gymnasium MuJoCo v5, not the paper's D4RL data "
                     "(other data, other reference scores): a rough comparison only.")
    if left_out:
        lines.append(f"Not compared (not D4RL data or no published score): {', '.join(left_out)}.")
    return lines


def markdown(rows: Sequence[Row], algorithms: dict[str, str], note_lines: Sequence[str]) -> str:
    header = ["Task", *(f"{md_escape(n)} {part}" for n in algorithms for part in ("(paper)", "(offdiff)"))]
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * (2 * len(algorithms))]
    for r in rows:
        cells = [c for n, a in algorithms.items() for c in
                 (_paper_text(a, r.key, r.cells[n][0], "md"), _ours_text(r.cells[n][1], r.cells[n][2], "md"))]
        task = md_escape(r.task) + (OTHER_DATA["md"] if r.kind == "minari-mujoco" else "")
        lines.append("| " + " | ".join([task, *cells]) + " |")
    body = "\n".join(lines) if rows else NOTHING
    return "\n\n".join([body, *note_lines]) + "\n"


def latex(rows: Sequence[Row], algorithms: dict[str, str], note_lines: Sequence[str]) -> str:
    if not rows:
        return "\n".join(f"% {n}" for n in [NOTHING, *note_lines]) + "\n"
    spans = " & ".join(rf"\multicolumn{{2}}{{c}}{{{tex_escape(n)}}}" for n in algorithms)
    rules = " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(algorithms)))
    lines = [*(f"% {n}" for n in note_lines), "% needs \\usepackage{booktabs}",
             rf"\begin{{tabular}}{{l{'rr' * len(algorithms)}}}", r"\toprule", rf"Task & {spans} \\", rules,
             " & " + " & ".join(["paper & offdiff"] * len(algorithms)) + r" \\", r"\midrule"]
    for r in rows:
        cells = [c for n, a in algorithms.items() for c in
                 (_paper_text(a, r.key, r.cells[n][0], "tex"), _ours_text(r.cells[n][1], r.cells[n][2], "tex"))]
        task = tex_escape(r.task) + (OTHER_DATA["tex"] if r.kind == "minari-mujoco" else "")
        lines.append(" & ".join([task, *cells]) + r" \\")
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"


def csv_text(rows: Sequence[Row], algorithms: dict[str, str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["task", "dataset", "task_key", "data", "algorithm", "paper", "rule", "published",
                     "published_spread", "published_verified", "measured", "ci_low", "ci_high", "seeds"])
    for r in rows:
        for name, algo in algorithms.items():
            paper, ours, n = r.cells[name]
            values: list[Any] = ["", "", ""] if paper is None else [
                paper[0], "" if paper[1] is None else paper[1], str(r.key not in papers()[algo].unverified).lower()]
            measured = ["", "", ""] if ours is None else [
                f"{ours.point:.4f}", *(("", "") if ours.low is None else (f"{ours.low:.4f}", f"{ours.high:.4f}"))]
            writer.writerow([r.task, r.dataset, r.key, r.kind, name, algo, papers()[algo].rule, *values,
                             *measured, n])
    return buffer.getvalue()
