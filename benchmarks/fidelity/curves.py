"""Training curves of both sides, side by side: every metric an offdiff run and its official twin both log.

    python benchmarks/fidelity/curves.py runs/fidelity --out results/fidelity

For each dataset and each pair `<algo>` / `<algo>-official` under the run folders (finished runs only), one figure
(`training_curves_<algo>_<dataset>.png/.pdf`): a panel per shared metric (losses, Q on data, policy Q), the
seeds' mean as a line and their range as a band, against the total training step (stages one after the other,
the boundaries dashed), and beside it a table (`.md`) of where the two bands do not meet: per metric, the steps
both sides log and those at which every seed of one side lies above every seed of the other. The scores
themselves are `offdiff aggregate`'s (rliable statistics, learning curves).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `fidelity` is benchmarks/fidelity

from fidelity.harness import official_label  # noqa: E402
from offdiff.analysis.collect import find_run_dirs, read_run  # noqa: E402
from offdiff.analysis.plots import render  # noqa: E402
from offdiff.errors import OffdiffError  # noqa: E402
from offdiff.io import atomic_write_bytes  # noqa: E402
from offdiff.records import Metrics, RunDir  # noqa: E402

# {(algo, dataset): {metric: {total step: [value per seed]}}}
Curves = dict[tuple[str, str], dict[str, dict[int, list[float]]]]


def read_curves(paths: list[Path]) -> tuple[Curves, dict[tuple[str, str], list[int]]]:
    """The metrics of every finished run (DONE) under `paths`, by (algorithm, dataset), and the stage boundaries
    of each. A run still training would add a partial curve and count as a seed: it is left out, with a line."""
    curves: Curves = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    boundaries: dict[tuple[str, str], list[int]] = {}
    for path in find_run_dirs(paths):
        run = read_run(path)
        if not run.done:
            print(f"curves.py: left out {path}: not finished (no DONE)")
            continue
        key = (run.algo, run.dataset)
        boundaries[key] = list(run.stage_offsets[1:])
        for row in RunDir(path).metric_rows():
            if isinstance(row, Metrics):
                for name, value in row.values.items():
                    curves[key][name][run.stage_offsets[row.stage_index] + row.step].append(float(value))
    return curves, boundaries


def pairs(curves: Curves) -> list[tuple[str, str]]:
    """(offdiff algorithm, dataset) for every dataset that has both it and its official twin."""
    return sorted((algo, data) for algo, data in curves if (official_label(algo), data) in curves)


def shared_metrics(algo: str, dataset: str, curves: Curves) -> list[str]:
    both = [curves[algo, dataset], curves[official_label(algo), dataset]]
    shared = sorted(set.intersection(*(set(c) for c in both)))
    if not shared:
        raise OffdiffError(f"{algo} and {official_label(algo)} on {dataset} log no metric in common")
    return shared


def bands_apart(ours: dict[int, list[float]], theirs: dict[int, list[float]]) -> tuple[list[int], list[int]]:
    """The steps both sides log, and those at which the sides' min–max bands over seeds do not meet."""
    steps = sorted(set(ours) & set(theirs))
    return steps, [s for s in steps if max(ours[s]) < min(theirs[s]) or max(theirs[s]) < min(ours[s])]


def seed_count(metrics: dict[str, dict[int, list[float]]]) -> int:
    """The most values any step of any metric holds: the seeds a side logged."""
    return max(len(values) for metric in metrics.values() for values in metric.values())


def _small(x: float) -> str:
    """Two decimals, or two significant digits where that would read 0.00."""
    return f"{x:.2f}" if x >= 0.005 else f"{x:.2g}"


def overlap_table(algo: str, dataset: str, curves: Curves) -> tuple[str, str]:
    """Per shared metric, how many logged steps the seeds' bands of the two sides do not meet at: (the count
    in one line, the Markdown table)."""
    official = official_label(algo)
    lines = [f"# {algo} against {official} on {dataset}: where the seeds' bands do not meet", "",
             "| metric | steps both log | bands apart | at steps |", "|:---|---:|---:|:---|"]
    compared = apart_total = 0
    for metric in shared_metrics(algo, dataset, curves):
        steps, apart = bands_apart(curves[algo, dataset][metric], curves[official, dataset][metric])
        compared, apart_total = compared + len(steps), apart_total + len(apart)
        lines.append(f"| {metric} | {len(steps)} | {len(apart)} | {', '.join(map(str, apart)) or '—'} |")
    m, n = seed_count(curves[algo, dataset]), seed_count(curves[official, dataset])
    chance = 2 / math.comb(m + n, n)
    count = f"{apart_total} of {compared} (metric, step) points apart"
    lines += ["", f"{count}; seeds: {m} ({algo}), {n} ({official}). "
              f"A band is the seeds' min–max at a step; apart: every seed of one side above every seed of the "
              f"other. Were both sides' seeds draws of one distribution, a step would be apart with probability "
              f"2/C({m + n},{n}) = {_small(100 * chance)}%, about {_small(chance * compared)} of these points by "
              f"chance (the steps of a curve are not independent): isolated points apart are expected, a run of "
              f"neighbouring steps is worth a look."]
    return count, "\n".join(lines) + "\n"


def figure(algo: str, dataset: str, curves: Curves, boundaries: dict[tuple[str, str], list[int]]) -> Figure:
    sides = {algo: curves[algo, dataset], official_label(algo): curves[official_label(algo), dataset]}
    shared = shared_metrics(algo, dataset, curves)
    cols = min(3, len(shared))
    rows = math.ceil(len(shared) / cols)
    fig = Figure(figsize=(4.0 * cols, 2.8 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, shared, strict=False):
        for colour, (label, side) in zip(("C0", "C3"), sides.items(), strict=True):
            steps = np.array(sorted(side[metric]))
            values = [np.array(side[metric][s]) for s in steps]
            mean = np.array([v.mean() for v in values])
            ax.plot(steps, mean, color=colour, label=f"{label} (n={max(len(v) for v in values)})")
            ax.fill_between(steps, [v.min() for v in values], [v.max() for v in values], color=colour, alpha=0.2)
        for boundary in boundaries.get((algo, dataset), []):
            ax.axvline(boundary, color="0.5", linestyle="--", linewidth=0.8)
        ax.set_title(metric)
        ax.set_xlabel("training step")
    for ax in axes[len(shared):]:
        ax.set_visible(False)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{algo} vs {official_label(algo)}: {dataset} (mean over seeds, band: min-max)")
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="curves.py", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="folders of run folders (both sides)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        curves, boundaries = read_curves(args.runs)
        found = pairs(curves)
        if not found:
            raise OffdiffError(f"no offdiff run with its official twin on the same dataset under "
                               f"{', '.join(map(str, args.runs))}")
        for algo, dataset in found:
            stem = f"training_curves_{algo}_{dataset.replace('/', '-')}"
            for fmt, data in render(lambda a=algo, d=dataset: figure(a, d, curves, boundaries)).items():
                atomic_write_bytes(args.out / f"{stem}.{fmt}", data)
            count, table = overlap_table(algo, dataset, curves)
            atomic_write_bytes(args.out / f"{stem}.md", table.encode())
            print(f"wrote {args.out / stem}.png/.pdf/.md: {count}")
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
