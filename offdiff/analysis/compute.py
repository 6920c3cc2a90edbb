"""Score against compute: each algorithm's IQM beside the compute its runs spent and its policy's acting speed.

`points` joins the aggregate IQM (with its CI) of every algorithm to its finished runs' compute rows in the
diagnostics CSV: device-seconds per run (its own stages plus what the producers of its cached stages spent), the
training part of them,
and the acting throughput of its final policy at its last evaluation (actions/s, environments excluded).
An algorithm with a run of unknown compute (a run folder older than the accounting) is left out and named.
`table` writes compute.md; `figure` plots IQM against device-hours and against actions/s, log x axes, with the
Pareto front (the points no other point beats on both score and compute). Labels of one plugin, e.g. the
rungs of a budget ladder, are joined by a thin line in order of compute.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from offdiff.analysis.diagnostics import mean_and_range, run_device_s, run_train_s
from offdiff.analysis.layout import Presentation
from offdiff.analysis.plots import SCORE
from offdiff.analysis.stats import Estimate
from offdiff.analysis.tables import md_escape


@dataclasses.dataclass(frozen=True)
class Point:
    """One algorithm (display name) of a collection: its IQM and what its runs spent."""

    algorithm: str
    plugin: str
    runs: int
    iqm: Estimate
    devices: tuple[str, ...]
    device_s: tuple[float, ...]  # per run
    train_s: tuple[float | None, ...]  # per run, training only (None: a run older than that record)
    actions_per_s: tuple[float, ...]  # per run whose final policy was evaluated with the timing


def points(frame: pd.DataFrame, diagnostics: pd.DataFrame, estimates: dict[str, dict[str, Estimate]],
           tasks: list[str], present: Presentation) -> tuple[list[Point], list[str]]:
    """Per algorithm in the aggregates (display order), its point over the finished runs on the aggregates'
    `tasks`; and the algorithms left out for unknown compute."""
    heads = frame[frame.is_last & frame.done & frame.dataset.map(present.tasks).isin(tasks)]
    compute = diagnostics[diagnostics.kind == "compute"]
    out, unknown = [], []
    for label, name in present.algorithms.items():
        if name not in estimates:
            continue
        runs = sorted(heads[heads.algorithm == label].run_dir)
        rows = [compute[compute.run_dir == run] for run in runs]
        seconds = [run_device_s(r) for r in rows]
        if not runs or None in seconds:
            unknown.append(name)
            continue
        acting = [float(pd.to_numeric(r.sort_values("stage_index").actions_per_s).iloc[-1]) for r in rows]
        out.append(Point(name, str(heads[heads.algorithm == label].algo.iloc[0]), len(runs),
                         estimates[name]["IQM"], tuple(sorted({d for r in rows for d in r.device.dropna()})),
                         tuple(s for s in seconds if s is not None), tuple(run_train_s(r) for r in rows),
                         tuple(a for a in acting if not np.isnan(a))))
    return out, unknown


def _ci(e: Estimate) -> str:
    return f"{e.point:.1f}" + ("" if e.low is None else f" [{e.low:.1f}, {e.high:.1f}]")


def table(found: list[Point], unknown: list[str]) -> str:
    """compute.md: per algorithm, IQM [95% CI], device, device- and training-seconds per run, and final-policy
    actions/s."""
    lines = ["| algorithm | runs | IQM [95% CI] | device | device-s per run, mean (min–max) | "
             "training-s per run, mean (min–max) | actions/s of the final policy, mean (min–max) |",
             "|:---|---:|---:|:---|---:|---:|---:|"]
    for p in found:
        cells = [md_escape(p.algorithm), str(p.runs), _ci(p.iqm), md_escape(", ".join(p.devices) or "—"),
                 mean_and_range(p.device_s, 0), mean_and_range(p.train_s, 0), mean_and_range(p.actions_per_s, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["Score against compute, over the finished runs of the aggregates' tasks. IQM: as in aggregates.md. "
             "device-s: seconds each run spent on its device (training, evaluations, diagnostics), plus what the "
             "runs that produced its cached stages spent on them, so a shared pretraining counts in full for every "
             "run that uses it. training-s: the training part of those seconds alone (— for runs older than its "
             "record); diagnostics.md has it per task. actions/s: the final policy's acting throughput at its last "
             "evaluation (batched over the evaluation envs, environment steps excluded). All depend on the machine: "
             "compare rows measured on the same device."]
    if unknown:
        notes.append("Left out, some runs without compute accounting (run folders older than it): "
                     + ", ".join(md_escape(u) for u in unknown) + ".")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def pareto_front(xy: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats, by lower x and higher y, in order of x."""
    order = sorted(range(len(xy)), key=lambda i: (xy[i][0], -xy[i][1]))
    front, best = [], -np.inf
    for i in order:
        if xy[i][1] > best:
            front.append(i)
            best = xy[i][1]
    return front


def figure(found: list[Point], present: Presentation) -> Figure:
    """IQM with its CI against device-time per run (hours from an hour up, else seconds) and, where the runs timed
    their acting, against the final policy's actions/s."""
    hours = float(np.median([np.mean(p.device_s) for p in found])) >= 3600
    panels = [(lambda p: float(np.mean(p.device_s)) / (3600 if hours else 1),
               f"device-{'hours' if hours else 'seconds'} per run (training + evaluation), log scale", True)]
    if any(p.actions_per_s for p in found):
        panels.append((lambda p: float(np.mean(p.actions_per_s)) if p.actions_per_s else np.nan,
                       "actions/s of the final policy, log scale", False))
    fig = Figure(figsize=(4.6 * len(panels) + 0.4, 3.9), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    handles = {}
    for ax, (x_of, xlabel, lower_is_better) in zip(axes, panels, strict=True):
        shown = [p for p in found if np.isfinite(x_of(p)) and x_of(p) > 0]
        for plugin in dict.fromkeys(p.plugin for p in shown):
            mine = sorted((p for p in shown if p.plugin == plugin), key=x_of)
            if len(mine) > 1:
                ax.plot([x_of(p) for p in mine], [p.iqm.point for p in mine], color=present.colors[mine[0].algorithm],
                        linewidth=0.8, alpha=0.6, zorder=1)
        for p in shown:
            e = p.iqm
            yerr = None if e.low is None else [[e.point - e.low], [e.high - e.point]]
            handles[p.algorithm] = ax.errorbar([x_of(p)], [e.point], yerr=yerr, fmt="o",
                                               color=present.colors[p.algorithm], capsize=3, zorder=3)
        front = [shown[i] for i in pareto_front([((x_of(p) if lower_is_better else -x_of(p)), p.iqm.point)
                                                 for p in shown])]
        if len(front) > 1:
            ax.plot([x_of(p) for p in front], [p.iqm.point for p in front], color="0.4", linestyle="--",
                    linewidth=1.0, zorder=2, drawstyle="steps-post")  # the best score reachable at each cost
            ax.text(0.01, 0.99, "dashed: Pareto front", transform=ax.transAxes, va="top", fontsize="small",
                    color="0.3")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))
        ax.set_xlabel(xlabel)
        ax.margins(x=0.15)
    axes[0].set_ylabel(f"IQM {SCORE} (95% CI)")
    names = [a for a in present.algorithm_names if a in handles]
    fig.legend([handles[a] for a in names], names, loc="outside upper center", ncols=min(len(names), 4))
    return fig
