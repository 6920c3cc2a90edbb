"""`offdiff aggregate`: collect run folders into `scores.csv`, then derive every other output from that CSV.

Everything but `provenance.json` (which records how this copy was made) is a function of the CSV's
bytes, the bootstrap reps and the seed, so `--from-csv` regenerates the folder byte for byte. Outputs
that a collection cannot support (plots without finished runs, a comparison with one algorithm) are
left out with a note, and stale copies of them are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import offdiff
from offdiff.analysis import compute, plots, published, stats, tables
from offdiff.analysis import diagnostics as diagnostics_module
from offdiff.analysis import layout as layout_module
from offdiff.analysis.collect import collect
from offdiff.analysis.layout import Layout, Presentation
from offdiff.analysis.published import papers
from offdiff.analysis.scores import (
    Curves,
    ScoreMatrices,
    best_scores,
    final_scores,
    final_stage,
    read_scores,
    score_matrices,
    to_csv_bytes,
)
from offdiff.analysis.scores import curves as score_curves
from offdiff.errors import OffdiffError
from offdiff.io import atomic_folder, atomic_write_bytes, atomic_write_json
from offdiff.provenance import git_state
from offdiff.registry import get_algorithm

FIGURES = {
    "learning_curves": "normalized score over the main stage per task, mean ± std over finished seeds",
    "sample_efficiency": "IQM over runs and tasks against main-stage steps, 95% CIs",
    "aggregate_intervals": "IQM, mean, median, optimality gap: point estimates and 95% CIs",
    "performance_profiles": "fraction of runs above each normalized score (rliable score distributions), 95% CIs",
    "probability_of_improvement": "probability of improvement between each pair of algorithms, 95% CIs",
}
DESCRIPTIONS = {
    "scores.csv": "one row per evaluation of every run (the source of everything else here)",
    "scores.md": "per-task table by domain with averages, headline score (Markdown)",
    "scores.tex": "per-task table by domain with averages, headline score (LaTeX, booktabs)",
    "scores_best.md": "per-task table, best evaluation over training (online model selection, optimistic)",
    "scores_best.tex": "the same, LaTeX",
    "scores_summary.csv": "both per-task tables (view final: headline, best: best over training), as a CSV",
    "diagnostics.csv": "stage diagnostics of every run: diagnostic policies, Q calibration, data average, compute",
    "diagnostics.md": "final score beside the behaviour model's, gain, data average, Q calibration, compute",
    "compute.md": "IQM beside device- and training-seconds per run and the final policy's actions/s",
    "aggregates.md": "IQM, mean, median, optimality gap with 95% stratified-bootstrap CIs",
    "aggregates.tex": "the same, LaTeX",
    "aggregates.csv": "the same, as a CSV",
    "prob_improvement.md": "probability of improvement between each pair of algorithms",
    "prob_improvement.tex": "the same, LaTeX",
    "prob_improvement.csv": "the same, as a CSV",
    "published.md": "the papers' published D4RL scores beside offdiff's, under each paper's reporting rule",
    "published.tex": "the same, LaTeX",
    "published.csv": "the same, as a CSV",
    **{f"{name}.{ext}": text for name, text in FIGURES.items() for ext in ("png", "pdf")},
    **{f"score_vs_compute.{ext}": "IQM against device-time per run and against the final policy's actions/s, "
                                  "Pareto front (with diagnostics)" for ext in ("png", "pdf")},
    "layout.yaml": "the names, order and options these files were made with (--layout)",
    "provenance.json": "offdiff version, git commit, command, runs collected, their data's SHA-256, runs skipped",
}
OUTPUTS = (*DESCRIPTIONS, "README.md")
ABOUT = "ABOUT.md"  # written by hand, never by `aggregate`: when --out holds it, it opens README.md
HEADLINE = ("Normalized score (0 and 100 = the dataset's reference min and max, e.g. random and expert) of the "
            "last evaluation of each finished run (DONE): mean ± std over seeds (n seeds).")
BEST = ("Best evaluation over training of each finished run (DONE), i.e. online model selection, optimistic: "
        "mean ± std over seeds (n seeds). Report the headline table (scores.md), not this one.")
MARKS = "Best per row in bold; — no finished run; † fewer seeds than the fullest cell."


@dataclasses.dataclass(frozen=True)
class Result:
    out: Path
    files: list[str]
    skipped: list[tuple[str, str]]


def _run_notes(frame: pd.DataFrame) -> list[str]:
    runs = frame.groupby("run_dir", sort=True).agg(done=("done", "first"), evaluated=("normalized", "count"))
    notes = []
    unfinished = list(runs.index[~runs.done])
    if unfinished:
        notes.append(f"{len(unfinished)} run(s) not finished (no DONE), not counted: {', '.join(unfinished)}")
    silent = list(runs.index[runs.done & (runs.evaluated == 0)])
    if silent:
        notes.append(f"{len(silent)} finished run(s) without any evaluation: {', '.join(silent)}")
    return notes


def _normalization_kind(source: str) -> str:
    """A reference-score source without what is particular to one task (each toy task has its own scores)."""
    return "each toy task's own scores" if source.startswith("offdiff toy task") else source


def _normalization_notes(frame: pd.DataFrame, present: Presentation) -> list[str]:
    """Which reference scores normalized which task, when the tasks do not all share one kind of source."""
    recorded = frame[frame.ref_scores_source.notna()]
    by_source: dict[str, list[str]] = {}
    for dataset, task in present.tasks.items():
        for source in sorted({_normalization_kind(s) for s in recorded[recorded.dataset == dataset].ref_scores_source}):
            by_source.setdefault(source, []).append(task)
    if len(by_source) < 2:
        return []
    return ["Reference scores differ between tasks: " + "; ".join(f"{', '.join(tasks)}: {source}" for source, tasks
                                                                  in sorted(by_source.items())) + "."]


def _dataset_notes(present: Presentation) -> list[str]:
    """Which dataset each task name stands for, where the two differ."""
    renamed = [f"{name} = {dataset}" for dataset, name in present.tasks.items() if name != dataset]
    return [f"Datasets: {', '.join(renamed)}."] if renamed else []


def _aggregate_notes(matrices: ScoreMatrices, tasks: list[str], reps: int, seed: int) -> list[str]:
    if not matrices.scores:
        return ["No aggregates: no task has a finished run of every algorithm.", *matrices.notes]
    notes = [f"Normalized scores (0-100) of the last evaluation of each finished run, on the {len(matrices.tasks)} "
             f"task(s) every algorithm has: {', '.join(tasks)}.",
             f"95% percentile stratified-bootstrap CIs over seeds (rliable, {reps} reps, seed {seed}); "
             "optimality gap: lower is better.", *matrices.notes]
    single = [a for a, s in matrices.seeds.items() if len(s) < 2]
    if single:
        notes.append(f"No CI for {', '.join(single)}: a bootstrap needs two seeds or more.")
    return notes


def _improvement_notes(matrices: ScoreMatrices, tasks: list[str], reps: int, seed: int) -> list[str]:
    if len(matrices.scores) < 2:
        return [f"Skipped: the probability of improvement needs two algorithms or more with finished runs on "
                f"common tasks; this collection has {len(matrices.scores)}."]
    return [f"P(X > Y): probability that a run of X scores higher than a run of Y on a task picked at random "
            f"(rliable), on {', '.join(tasks)}; 95% stratified-bootstrap CIs ({reps} reps, seed {seed}); "
            "no CI where an algorithm has one seed."]


def plugin_display_name(algo: str) -> str:
    """The plugin's `display_name`, or `algo` itself when no plugin of that name is installed."""
    try:
        return get_algorithm(algo).display_name
    except OffdiffError:
        return algo


def _published(a: Analysis) -> dict[str, bytes]:
    """published.{md,tex,csv}: the plugins' papers' numbers beside the measured ones."""
    algos = dict(a.frame[["algorithm", "algo"]].drop_duplicates().itertuples(index=False))
    tasks = dict(a.frame[["dataset", "task"]].drop_duplicates().itertuples(index=False))
    algorithms = {name: algos[label] for label, name in a.present.algorithms.items() if algos[label] in papers()}
    datasets = {d: (name, tasks[d]) for d, name in a.present.tasks.items()}
    rows = published.comparison(a.final, a.best, datasets, algorithms, a.reps, a.seed)
    left_out = [name for name in a.present.task_names if name not in {r.task for r in rows}]
    files = {f"published.{fmt}": write(rows, algorithms, published.notes(rows, algorithms, left_out, a.reps, a.seed,
                                                                          fmt)).encode()
             for fmt, write in (("md", published.markdown), ("tex", published.latex))}
    return {**files, "published.csv": published.csv_text(rows, algorithms).encode()}


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What a collection's tables and figures are made of, under display names."""

    frame: pd.DataFrame  # the scores CSV as read
    present: Presentation
    shown: pd.DataFrame  # the CSV with display names for algorithms and datasets
    final: pd.DataFrame
    best: pd.DataFrame
    matrices: ScoreMatrices
    common: list[str]  # the matrices' tasks in display order
    estimates: dict[str, dict[str, stats.Estimate]]
    pairs: dict[tuple[str, str], stats.Estimate]
    curves: Curves
    reps: int
    seed: int

    @property
    def shape(self) -> dict[str, tuple[int, int]]:
        """Per algorithm in the aggregates: (runs, tasks)."""
        return {a: (len(s), len(self.matrices.tasks)) for a, s in self.matrices.seeds.items()}


def analyse(frame: pd.DataFrame, reps: int, seed: int, layout: Layout | None = None,
            display_name: Callable[[str], str] = plugin_display_name) -> Analysis:
    """Names, views, score matrices and rliable statistics of the parsed CSV `frame`."""
    present = layout_module.present(frame, layout or Layout(), display_name)
    shown = frame.assign(algorithm=frame.algorithm.map(present.algorithms), dataset=frame.dataset.map(present.tasks))
    final = final_scores(shown)
    dataset_of = {name: dataset for dataset, name in present.tasks.items()}
    # Columns in dataset-id order: the stratified bootstrap draws task by task, so the CIs do not depend on
    # the display order or names.
    matrices = score_matrices(final, present.algorithm_names, sorted(present.task_names, key=dataset_of.__getitem__))
    return Analysis(frame, present, shown, final, best_scores(shown), matrices,
                    common=[t for t in present.task_names if t in matrices.tasks],
                    estimates=stats.aggregate_estimates(matrices, reps, seed),
                    pairs=stats.probability_of_improvement(matrices, reps, seed),
                    curves=score_curves(shown, matrices), reps=reps, seed=seed)


def _tables(a: Analysis) -> dict[str, bytes]:
    """Every table of the analysis, as file name -> bytes."""
    algorithms, tasks = a.present.algorithm_names, a.present.task_names
    normalization = _normalization_notes(a.frame, a.present)
    files: dict[str, bytes] = {}
    for stem, view, title in (("scores", a.final, HEADLINE), ("scores_best", a.best, BEST)):
        for fmt in ("md", "tex"):
            text = tables.per_task_table(view, tasks, algorithms, fmt,
                                         [title, MARKS, *_dataset_notes(a.present), *normalization,
                                          *_run_notes(a.frame)], a.present.domains)
            files[f"{stem}.{fmt}"] = text.encode()
    views = {"final": a.final, "best": a.best}
    files["scores_summary.csv"] = tables.task_scores_csv(views, tasks, algorithms, a.present.domains).encode()
    notes = _aggregate_notes(a.matrices, a.common, a.reps, a.seed) + normalization
    for fmt in ("md", "tex") if a.estimates else ("md",):
        files[f"aggregates.{fmt}"] = tables.aggregates_table(a.estimates, a.matrices.seeds, len(a.matrices.tasks),
                                                             fmt, notes).encode()
    files["aggregates.csv"] = tables.aggregates_csv(a.estimates, len(a.matrices.tasks), a.matrices.seeds).encode()
    improvement_notes = _improvement_notes(a.matrices, a.common, a.reps, a.seed)
    for fmt in ("md", "tex") if a.pairs else ("md",):
        files[f"prob_improvement.{fmt}"] = tables.improvement_table(a.pairs, fmt, improvement_notes).encode()
    if a.pairs:
        files["prob_improvement.csv"] = tables.improvement_csv(a.pairs).encode()
    if a.present.layout.compare_published:
        files.update(_published(a))
    return files


def figures(a: Analysis) -> dict[str, Callable[[], Figure]]:
    """The figures the analysis supports, by file stem, as builders (nothing is drawn until one is called)."""
    rows = final_stage(a.shown)
    out: dict[str, Callable[[], Figure]] = {}
    if not rows.empty:
        out["learning_curves"] = lambda: plots.learning_curves(rows, a.present)
    if a.estimates:
        efficiency = stats.sample_efficiency(a.curves.scores, a.reps, a.seed)
        taus = stats.profile_thresholds(a.matrices, a.present.layout.tau_max)
        profiles = stats.performance_profiles(a.matrices, taus, a.reps, a.seed)
        if efficiency:
            out["sample_efficiency"] = lambda: plots.sample_efficiency(a.curves.steps, efficiency, a.curves.offsets,
                                                                       a.shape, a.present)
        out["aggregate_intervals"] = lambda: plots.interval_estimates(a.estimates, a.shape, a.present)
        out["performance_profiles"] = lambda: plots.performance_profiles(taus, profiles, a.shape, a.present)
    if a.pairs:
        out["probability_of_improvement"] = lambda: plots.probability_of_improvement(a.pairs, a.present)
    return out


def derive(frame: pd.DataFrame, reps: int, seed: int, about: str = "", layout: Layout | None = None,
           display_name: Callable[[str], str] = plugin_display_name,
           diagnostics: bytes | None = None) -> dict[str, bytes]:
    """Every output but the CSV and provenance, from the parsed CSV: file name -> bytes. `about` (Markdown,
    e.g. what was run and with which budgets) opens the README; `layout` overrides names, order and options;
    `diagnostics` (a diagnostics CSV) is kept as diagnostics.csv and gives diagnostics.md."""
    a = analyse(frame, reps, seed, layout, display_name)
    files = _tables(a)
    if diagnostics is not None:
        parsed = diagnostics_module.parse_csv(diagnostics, "diagnostics.csv")
        files["diagnostics.csv"] = diagnostics
        files["diagnostics.md"] = diagnostics_module.table(frame, parsed, a.present).encode()
        found, unknown = compute.points(frame, parsed, a.estimates, a.common, a.present)
        if found:
            files["compute.md"] = compute.table(found, unknown).encode()
            for ext, data in plots.render(lambda: compute.figure(found, a.present)).items():
                files[f"score_vs_compute.{ext}"] = data
    for name, build in figures(a).items():
        for ext, data in plots.render(build).items():
            files[f"{name}.{ext}"] = data
    layout_text = a.present.layout.to_yaml()
    if layout_text:
        files["layout.yaml"] = layout_text.encode()
    readme = _readme(frame, files, _run_notes(frame) + a.curves.notes, reps, seed, heading="#" * (1 + bool(about)),
                     layout=bool(layout_text))
    files["README.md"] = (about + readme).encode()
    return files


def _readme(frame: pd.DataFrame, files: dict[str, bytes], run_notes: list[str], reps: int, seed: int,
            heading: str, layout: bool) -> str:
    runs = frame.drop_duplicates("run_dir")
    names = [n for n in DESCRIPTIONS if n in files or n in ("scores.csv", "provenance.json")]
    lines = [
        f"{heading} offdiff aggregate",
        "",
        "Everything here but provenance.json is derived from scores.csv alone (algorithms named by their plugins' "
        f"display names{', and layout.yaml' * layout}): "
        f"`offdiff aggregate --from-csv scores.csv{' --layout layout.yaml' * layout} --out DIR --reps {reps} "
        f"--seed {seed}` regenerates it byte for "
        "byte.",
        "",
        f"{len(runs)} run(s), {int(runs.done.sum())} finished; {frame.algorithm.nunique()} algorithm(s), "
        f"{frame.dataset.nunique()} dataset(s), {int(frame.normalized.notna().sum())} evaluation(s).",
        "Headline score: the last evaluation of each finished run. The best evaluation over training is online "
        "model selection (optimistic) and is kept apart, in scores_best.*.",
        "",
        "| file | contents |",
        "|:---|:---|",
        *(f"| {n} | {DESCRIPTIONS[n]} |" for n in names),
    ]
    missing = [f"{name}.*" for name in FIGURES if f"{name}.png" not in files]
    notes = run_notes + ([f"Not drawn (too little finished to plot; see aggregates.md): {', '.join(missing)}"]
                         if missing else [])
    notes_part = ["", f"{heading}# Notes", "", *(f"- {n}" for n in notes)] if notes else []
    return "\n".join(lines + notes_part) + "\n"


def aggregate(out: Path, runs: Sequence[Path] = (), from_csv: Path | None = None, reps: int = 2000,
              seed: int = 0, skip_bad: bool = False, command: str = "", layout: Layout | None = None) -> Result:
    """Collect `runs` (or read `from_csv`) into `out`/scores.csv, then write every derived output."""
    if bool(runs) == (from_csv is not None):
        raise OffdiffError("give run folders to collect, or --from-csv CSV, not both and not neither")
    if reps < 1 or not 0 <= seed < 2**32:
        raise OffdiffError(f"--reps must be at least 1 and --seed in [0, 2**32), got reps={reps} seed={seed}")
    if out.exists() and not out.is_dir():
        raise OffdiffError(f"--out {out} exists and is not a directory")
    skipped: list[tuple[str, str]] = []
    data_sha256: dict[str, str] | None = None  # not known from a CSV
    if from_csv is None:
        collection = collect(runs, skip_bad=skip_bad)
        data_sha256 = dict(sorted(collection.data_sha256.items()))
        skipped, csv = collection.skipped, to_csv_bytes(collection.rows)
        found, bad = diagnostics_module.collect_rows(collection.rows, skip_bad)
        skipped += bad
        diagnostics = diagnostics_module.to_csv_bytes(found) if found else None
    else:
        frame, csv = read_scores(from_csv), from_csv.read_bytes()  # a bad CSV fails before anything is written
        beside = from_csv.parent / "diagnostics.csv"
        diagnostics = beside.read_bytes() if beside.is_file() else None
    about = (out / ABOUT).read_text() + "\n" if (out / ABOUT).is_file() else ""
    with atomic_folder(out, drop=OUTPUTS) as tmp:  # all or nothing: `out` is replaced whole, or left as it was
        atomic_write_bytes(tmp / "scores.csv", csv)
        if from_csv is None:
            frame = read_scores(tmp / "scores.csv")  # the outputs come from the parsed file, either way
        files = {"scores.csv": csv, **derive(frame, reps, seed, about, layout, diagnostics=diagnostics)}
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        atomic_write_json(tmp / "provenance.json", {
            "offdiff_version": offdiff.__version__,
            "git": git_state(),
            "command": command,
            "scores_csv_sha256": hashlib.sha256(files["scores.csv"]).hexdigest(),
            "runs": sorted(frame.run_dir.unique().tolist()),
            "data_sha256": data_sha256,
            "skipped": [{"run_dir": path, "reason": reason} for path, reason in skipped],
            "bootstrap": {"reps": reps, "seed": seed, "numpy": np.__version__},
        })
    return Result(out, sorted([*files, "provenance.json"]), skipped)
