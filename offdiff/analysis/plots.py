"""Figures: learning curves per task, sample-efficiency curves, aggregate interval estimates, performance
profiles, probability of improvement.

Every figure takes the same `Presentation`, so an algorithm has one name, colour and line style in all
of them, and curves put each algorithm's main stage at step 0 (its pretraining is named in the legend,
not drawn as a shift along the axis). Figures are built with `matplotlib.figure.Figure` (the Agg canvas;
no pyplot, no display, no global figure state) under matplotlib's default style plus `STYLE`, whatever
the user's matplotlibrc says, and saved with no timestamp or version strings, so the PNG and PDF bytes
depend on the data alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from offdiff.analysis.layout import Presentation
from offdiff.analysis.stats import Estimate
from offdiff.analysis.tables import LOWER_IS_BETTER

DPI = 150
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.spines.top": False, "axes.spines.right": False,
         "legend.frameon": False, "axes.grid": True, "grid.alpha": 0.25, "lines.linewidth": 1.8,
         "pdf.fonttype": 42}  # TrueType in PDFs: publishers reject Type 3 fonts
SCORE = "normalized score"


def styled() -> AbstractContextManager[None]:
    """matplotlib's default style plus `STYLE`, whatever the user's matplotlibrc says."""
    return matplotlib.style.context(["default", STYLE])


def render(build: Callable[[], Figure]) -> dict[str, bytes]:
    """Build a figure under `styled()` and return its PNG and PDF bytes (reproducible)."""
    with styled():
        fig = build()
        out = {}
        for fmt, metadata in METADATA.items():
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)  # laid out by the constrained engine
            out[fmt] = buffer.getvalue()
    return out


def steps_text(steps: float) -> str:
    """1500 -> 1.5k, 1000000 -> 1M."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(steps) >= size:
            return f"{steps / size:.3g}{unit}"
    return f"{steps:.3g}"


_STEPS = FuncFormatter(lambda x, _: steps_text(x))


def curve_label(name: str, offsets: Sequence[int]) -> str:
    """The legend entry of a curve: the algorithm, and the pretraining steps before its main stage."""
    if not offsets or max(offsets) == 0:
        return name
    span = steps_text(offsets[0]) if len(offsets) == 1 else f"{steps_text(offsets[0])}–{steps_text(offsets[-1])}"
    return f"{name} (after {span} pretraining steps)"


def _legend(fig: Figure, axes: Sequence[Axes], present: Presentation) -> None:
    """One legend above the figure, in the presentation's order, in as many columns as its width holds."""
    handles = {h.get_gid(): (h, label) for ax in axes for h, label in zip(*ax.get_legend_handles_labels(),
                                                                          strict=True)}
    entries = [handles[a] for a in present.algorithm_names if a in handles]
    if not entries:
        return
    room = 11 * fig.get_figwidth()  # characters of legend text per line, at 10 pt
    ncols = next(n for n in range(len(entries), 0, -1)
                 if n == 1 or n * (max(len(label) for _, label in entries) + 6) <= room)
    fig.legend([h for h, _ in entries], [label for _, label in entries], loc="outside upper center", ncols=ncols)


def _line(ax: Axes, present: Presentation, algorithm: str, x: np.ndarray, y: np.ndarray, low: np.ndarray | None,
          high: np.ndarray | None, label: str, steps: bool = False) -> None:
    """A curve in the algorithm's colour and line style (tagged with its name), and its band when given."""
    ax.plot(x, y, color=present.colors[algorithm], linestyle=present.linestyles[algorithm], label=label,
            gid=algorithm, **({"drawstyle": "steps-post"} if steps else {"marker": "."}))
    if low is None or high is None:
        return
    if len(x) == 1:  # a band needs two points: an error bar instead
        ax.errorbar(x, y, yerr=[y - low, high - y], color=present.colors[algorithm], capsize=3, linewidth=1)
    else:
        ax.fill_between(x, low, high, color=present.colors[algorithm], alpha=0.2, linewidth=0,
                        step="post" if steps else None)


def learning_curves(rows: pd.DataFrame, present: Presentation) -> Figure:
    """Per task, normalized score against main-stage step: mean ± std over seeds of each algorithm.
    `rows`: the main-stage evaluations (scores.final_stage) under display names."""
    tasks = [t for t in present.task_names if t in set(rows.dataset)]
    ncols = len(tasks) if len(tasks) <= 3 else 2 if len(tasks) == 4 else min(4, math.ceil(math.sqrt(len(tasks))))
    nrows = math.ceil(len(tasks) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.7 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks, strict=False):
        for algorithm in present.algorithm_names:
            mine = rows[(rows.dataset == task) & (rows.algorithm == algorithm)]
            if mine.empty:
                continue
            by_step = mine.groupby("step", sort=True).normalized
            mean, std = by_step.mean(), by_step.std(ddof=0).fillna(0.0)
            offsets = sorted({int(o) for o in rows[rows.algorithm == algorithm].offset})
            _line(ax, present, algorithm, mean.index.to_numpy(), mean.to_numpy(), (mean - std).to_numpy(),
                  (mean + std).to_numpy(), curve_label(algorithm, offsets))
        ax.set_title(task)
        ax.set_xlim(left=0)
        ax.xaxis.set_major_formatter(_STEPS)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    fig.supxlabel("training steps of the main stage", fontsize="medium")
    fig.supylabel(f"{SCORE} (mean ± std over seeds)", fontsize="medium")
    _legend(fig, axes[:len(tasks)], present)
    return fig


def sample_efficiency(steps: dict[str, np.ndarray], estimates: dict[str, list[Estimate]],
                      offsets: dict[str, tuple[int, ...]], shape: dict[str, tuple[int, int]],
                      present: Presentation) -> Figure:
    """IQM over runs and tasks against main-stage step, with 95% CIs, every algorithm on one axis."""
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for algorithm in [a for a in present.algorithm_names if a in estimates]:
        e = estimates[algorithm]
        low = None if e[0].low is None else np.array([x.low for x in e])
        high = None if e[0].high is None else np.array([x.high for x in e])
        _line(ax, present, algorithm, steps[algorithm], np.array([x.point for x in e]), low, high,
              curve_label(algorithm, offsets[algorithm]))
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(_STEPS)
    ax.set(xlabel="training steps of the main stage", ylabel=f"IQM {SCORE}")
    ax.set_title(f"IQM with 95% CIs over {_runs_text(shape)}", fontsize="medium")
    _legend(fig, [ax], present)
    return fig


def _runs_text(shape: dict[str, tuple[int, int]]) -> str:
    """`3 runs × 4 tasks`, or the range of runs when algorithms differ."""
    runs = sorted({r for r, _ in shape.values()})
    tasks = next(iter(shape.values()))[1]
    count = str(runs[0]) if len(runs) == 1 else f"{runs[0]}–{runs[-1]}"
    return f"{count} run{'s' * (runs[-1] > 1)} × {tasks} task{'s' * (tasks > 1)}"


def interval_estimates(estimates: dict[str, dict[str, Estimate]], shape: dict[str, tuple[int, int]],
                       present: Presentation) -> Figure:
    """One panel per metric: each algorithm's 95% CI as a bar and its point estimate as a tick."""
    algorithms = [a for a in present.algorithm_names if a in estimates]
    metrics = list(estimates[algorithms[0]])
    fig = Figure(figsize=(2.6 * len(metrics) + 1.0, 0.42 * len(algorithms) + 1.3), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for row, algorithm in enumerate(algorithms):
            e = estimates[algorithm][metric]
            if e.low is not None:
                ax.barh(row, e.high - e.low, left=e.low, height=0.6, color=present.colors[algorithm], alpha=0.75)
            ax.vlines(e.point, row - 0.3, row + 0.3, color="k")
        ax.set_title(metric + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
        ax.grid(True, axis="x")
        ax.grid(False, axis="y")
        ax.spines[["top", "right", "left"]].set_visible(False)
        ax.tick_params(axis="y", length=0)
        ax.use_sticky_edges = False  # a bar's left end would otherwise stop the margin
        ax.margins(x=0.08)
    same = len({r for r, _ in shape.values()}) == 1
    labels = algorithms if same else [f"{a} ({shape[a][0]} runs)" for a in algorithms]
    axes[0].set_yticks(range(len(algorithms)), labels)
    axes[0].set_ylim(len(algorithms) - 0.4, -0.6)  # the first algorithm on top
    fig.supxlabel(f"{SCORE}; 95% stratified-bootstrap CIs over {_runs_text(shape)}", fontsize="medium")
    return fig


def performance_profiles(taus: np.ndarray, profiles: dict[str, tuple[np.ndarray, np.ndarray | None]],
                         shape: dict[str, tuple[int, int]], present: Presentation) -> Figure:
    """rliable's score distributions: the fraction of runs above each normalized score tau, with 95% CIs."""
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    x = 100 * taus
    for algorithm in [a for a in present.algorithm_names if a in profiles]:
        point, ci = profiles[algorithm]
        _line(ax, present, algorithm, x, point, None if ci is None else ci[0], None if ci is None else ci[1],
              algorithm, steps=True)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(-0.02, 1.02)
    ax.set(xlabel=rf"{SCORE} $\tau$", ylabel=r"fraction of runs with score $> \tau$")
    ax.set_title(f"Score distributions with 95% CIs over {_runs_text(shape)}", fontsize="medium")
    _legend(fig, [ax], present)
    return fig


def probability_of_improvement(pairs: dict[tuple[str, str], Estimate], present: Presentation) -> Figure:
    """P(X > Y) with 95% CIs for each pair: X on the left, Y on the right, the bar in X's colour."""
    fig = Figure(figsize=(6.0, 0.45 * len(pairs) + 1.2), layout="constrained")
    ax = fig.subplots()
    for row, ((x, _), e) in enumerate(pairs.items()):
        if e.low is not None:
            ax.barh(row, e.high - e.low, left=e.low, height=0.6, color=present.colors[x], alpha=0.75)
        ax.vlines(e.point, row - 0.3, row + 0.3, color="k")
    ax.axvline(0.5, color="0.4", linestyle="--", linewidth=1)
    ax.set_xlim(-0.02, 1.02)  # a probability of 0 or 1 stays visible
    ax.set_ylim(len(pairs) - 0.4, -0.6)
    ax.set_yticks(range(len(pairs)), [x for x, _ in pairs])
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(range(len(pairs)), [y for _, y in pairs])
    for axis in (ax, right):
        axis.tick_params(axis="y", length=0)
        axis.grid(False, axis="y")
        axis.spines[["top", "left", "right"]].set_visible(False)
    ax.set_xlabel(r"$P(X > Y)$: a run of $X$ (left) scores above a run of $Y$ (right)")
    return fig
