"""Figures: learning curves per task, aggregate interval estimates, performance profiles.

Figures are built with `matplotlib.figure.Figure` (the Agg canvas; no pyplot, no display, no global
figure state) under matplotlib's default style, whatever the user's matplotlibrc says, and saved with
no timestamp or version strings, so the PNG and PDF bytes depend on the data alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rliable import plot_utils

from offdiff.analysis.stats import Estimate

DPI = 150
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}


def colors(algorithms: Sequence[str]) -> dict[str, str]:
    """One color per algorithm, the same in every figure."""
    return {a: f"C{i % 10}" for i, a in enumerate(algorithms)}


def render(build: Callable[[], Figure]) -> dict[str, bytes]:
    """Build a figure under the default style and return its PNG and PDF bytes (reproducible)."""
    with matplotlib.style.context("default"):
        fig = build()
        out = {}
        for fmt, metadata in METADATA.items():
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)  # laid out by the constrained engine
            out[fmt] = buffer.getvalue()
    return out


def learning_curves(evaluations: pd.DataFrame, tasks: Sequence[str], palette: dict[str, str]) -> Figure:
    """Per task, normalized score against training step: mean ± std over seeds of each algorithm."""
    ncols = min(3, len(tasks))
    fig = Figure(figsize=(4.5 * ncols, 3.4 * math.ceil(len(tasks) / ncols) + 0.6), layout="constrained")
    axes = fig.subplots(math.ceil(len(tasks) / ncols), ncols, squeeze=False).ravel()
    handles = {}
    for ax, task in zip(axes, tasks, strict=False):
        for algorithm in palette:
            rows = evaluations[(evaluations.dataset == task) & (evaluations.algorithm == algorithm)]
            if rows.empty:
                continue
            by_step = rows.groupby("total_step", sort=True).normalized
            steps, mean, std = by_step.mean().index.to_numpy(), by_step.mean().to_numpy(), by_step.std(ddof=0)
            (handles[algorithm],) = ax.plot(steps, mean, color=palette[algorithm], marker=".", label=algorithm)
            ax.fill_between(steps, mean - std.to_numpy(), mean + std.to_numpy(), color=palette[algorithm], alpha=0.2)
        ax.set(title=task, xlabel="training step", ylabel="normalized score")
        ax.grid(True, alpha=0.25)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=max(1, min(4, len(handles))))
    return fig


def interval_estimates(estimates: dict[str, dict[str, Estimate]], palette: dict[str, str]) -> Figure:
    """One panel per metric: each algorithm's 95% CI as a bar and its point estimate as a tick."""
    algorithms = [a for a in palette if a in estimates]
    metrics = list(estimates[algorithms[0]])
    fig = Figure(figsize=(3.4 * len(metrics), 0.45 * len(algorithms) + 1.0), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for row, algorithm in enumerate(algorithms):
            e = estimates[algorithm][metric]
            if e.low is not None:
                ax.barh(row, e.high - e.low, left=e.low, height=0.6, color=palette[algorithm], alpha=0.75)
            ax.vlines(e.point, row - 0.3, row + 0.3, color="k")
        ax.set_title(metric)
        ax.set_xlabel("normalized score")
        ax.grid(True, axis="x", alpha=0.25)
        ax.spines[["top", "right", "left"]].set_visible(False)
        ax.tick_params(axis="y", length=0)
    axes[0].set_yticks(range(len(algorithms)), algorithms)
    axes[0].set_ylim(len(algorithms) - 0.4, -0.6)  # the first algorithm on top
    return fig


def performance_profiles(taus: np.ndarray, profiles: dict[str, tuple[np.ndarray, np.ndarray | None]],
                         palette: dict[str, str]) -> Figure:
    """rliable's score distributions: the fraction of runs above each normalized score tau, with CIs."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    algorithms = [a for a in palette if a in profiles]
    points = {a: profiles[a][0] for a in algorithms}
    cis = {a: profiles[a][1] for a in algorithms if profiles[a][1] is not None}
    plot_utils.plot_performance_profiles(
        points, 100 * taus, performance_profile_cis=cis, colors=palette, ax=ax,
        xlabel=r"normalized score ($\tau$)", ylabel=r"fraction of runs with score $> \tau$", legend=True,
        labelsize="large", ticklabelsize="medium", legendsize="medium",
    )
    return fig
