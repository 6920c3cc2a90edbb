"""`offdiff aggregate`: collecting run folders, rliable statistics, tables, plots, byte-for-byte regeneration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from rliable import library, metrics

from offdiff.analysis import stats
from offdiff.analysis.report import aggregate
from offdiff.analysis.scores import ScoreMatrices, best_scores, final_scores, read_scores, score_matrices
from offdiff.cli import main
from offdiff.config import stable_hash
from offdiff.io import atomic_write_json, read_jsonl
from offdiff.records import Done, Evaluation, RunDir, Scores
from offdiff.train.runner import TrainRequest, plan, train

REPS, SEED = 200, 7
HOPPER, WALKER = "mujoco/hopper/medium-v0", "mujoco/walker2d/medium-v0"
TASKS = {HOPPER: "hopper-medium", WALKER: "walker2d-medium", "mujoco/hopper/expert-v0": "hopper-expert"}
LEVEL = {"dql": 60.0, "dtql": 75.0, "eda": 70.0}
SHOWN = {"dql": "Diffusion-QL", "dtql": "DTQL", "eda[beta=0.1]": "EDA[beta=0.1]", "eda[beta=1.0]": "EDA[beta=1.0]"}
FIGURES = ("learning_curves", "sample_efficiency", "aggregate_intervals", "performance_profiles",
           "probability_of_improvement")


def make_run(root: Path, algo: str, dataset: str, seed: int, *, config: dict | None = None, evals: int = 3,
             done: bool = True, stages: tuple[tuple[str, int, bool], ...] = (("main", 300, True),)) -> RunDir:
    """A run folder laid out and written the way `offdiff.train.runner` writes one (scores: normalized = return)."""
    config = {"lr": 3e-4, "steps": stages[-1][1], **(config or {})}
    protocol = {"eval_every": 100, "eval_episodes": 10, "eval_envs": 10, "log_every": 100,
                "checkpoint_every": 100}
    key = stable_hash({"config": config, "protocol": protocol})
    run = RunDir(root / "grid" / algo / dataset.replace("/", "-") / key / f"seed_{seed}")
    atomic_write_json(run.manifest, {
        "algorithm": algo, "config": config, "seed": seed, "eval_seed": 1000 + seed, "protocol": protocol,
        "dataset": {"dataset_id": dataset, "task": TASKS[dataset], "source": f"minari:{dataset}",
                    "eval_env": "Hopper-v5", "ref_scores": {"min": 0.0, "max": 100.0, "source": "test"}},
        "stages": [{"name": n, "steps": s, "evaluate": e, "batch_size": 256, "cacheable": False, "config_keys": []}
                   for n, s, e in stages],
        "versions": {"offdiff": "0.1.0"}, "git": {"commit": None, "dirty": None},
    })
    rng = np.random.default_rng(list(f"{algo} {dataset} {seed} {config}".encode()))
    index, (stage, steps, _) = len(stages) - 1, stages[-1]
    rows, offset = [], rng.normal(0, 4)  # a seed effect, so that the algorithms' scores overlap
    for k in range(1, evals + 1):
        returns = LEVEL[algo] * k / evals + config.get("beta", 0) * 10 + offset + rng.normal(0, 5, size=10)
        rows.append(Scores(returns=returns.tolist(), lengths=[1000] * 10, seeds=list(range(1000 + seed, 1010 + seed)),
                           normalized=returns.tolist(), mean_return=float(returns.mean()),
                           normalized_mean=float(returns.mean()), normalized_std=float(returns.std())))
        run.append(run.evals, Evaluation(stage, index, k * steps // evals, rows[-1]).to_json())
    if done:
        atomic_write_json(run.done_marker, Done(
            run_dir=str(run.path), final_normalized_score=rows[-1].normalized_mean,
            best_normalized_score_online_selection=max(r.normalized_mean for r in rows)).to_json())
    return run


def make_grid(root: Path, seeds: int = 3) -> None:
    """dql and dtql, and an EDA beta sweep (two configs, one algorithm) on two tasks with `seeds` seeds each."""
    for dataset in (HOPPER, WALKER):
        for seed in range(seeds):
            make_run(root, "dql", dataset, seed)
            make_run(root, "dtql", dataset, seed)
            for beta in (0.1, 1.0):
                make_run(root, "eda", dataset, seed, config={"beta": beta},
                         stages=(("pretrain", 100, False), ("main", 300, True)))


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "provenance.json"}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake grid plus one unfinished run (dql, hopper, seed 3), aggregated once into out/ (read only)."""
    root = tmp_path_factory.mktemp("grid")
    make_grid(root / "runs")
    make_run(root / "runs", "dql", HOPPER, 3, done=False, evals=2)
    aggregate(root / "out", [root / "runs"], reps=REPS, seed=SEED)
    return root


def test_collects_one_row_per_evaluation_with_config_labels(grid):
    frame = read_scores(grid / "out" / "scores.csv")
    assert len(frame) == 2 * 3 * 4 * 3 + 2
    assert sorted(frame.algorithm.unique()) == ["dql", "dtql", "eda[beta=0.1]", "eda[beta=1.0]"]
    eda = frame[(frame.algorithm == "eda[beta=1.0]") & (frame.dataset == WALKER) & (frame.seed == 2)]
    evals = read_jsonl(Path(eda.run_dir.iloc[0]) / "evals.jsonl")
    assert eda.normalized.tolist() == [e["normalized_mean"] for e in evals]  # exact floats through the CSV
    assert eda.total_step.tolist() == [200, 300, 400] and eda.step.tolist() == [100, 200, 300]
    assert eda.is_last.tolist() == [False, False, True] and eda.episodes.tolist() == [10, 10, 10]
    assert eda.stage.tolist() == ["main"] * 3 and eda.config_hash.iloc[0] == Path(eda.run_dir.iloc[0]).parent.name
    assert set(frame.ref_scores_source) == {"test"}  # the manifest's dataset.ref_scores.source
    late = frame[frame.seed == 3]
    assert len(late) == 2 and not late.done.any() and late.is_last.tolist() == [False, True]
    assert "1 run(s) not finished" in (grid / "out" / "README.md").read_text()
    assert late.run_dir.iloc[0] in (grid / "out" / "scores.md").read_text()
    table = (grid / "out" / "scores.md").read_text()
    assert table.count("(3) |") == 8 and "(4)" not in table and "†" not in table.split("\n\n")[0]


def test_best_over_training_is_a_separate_view(grid):
    frame = read_scores(grid / "out" / "scores.csv")
    run = (frame.algorithm == "dql") & (frame.dataset == HOPPER) & (frame.seed == 0)
    frame.loc[run & (frame.step == 200), "normalized"] = 99.0  # a peak in the middle of training
    best, final = best_scores(frame), final_scores(frame)
    def score(view):
        return view[(view.algorithm == "dql") & (view.dataset == HOPPER) & (view.seed == 0)].score.item()

    assert score(best) == 99.0 > score(final) == frame[run & frame.is_last].normalized.item()
    assert len(best) == len(final) == 2 * 4 * 3 and set(best.seed) == {0, 1, 2}  # finished runs only
    assert "online model selection, optimistic" in (grid / "out" / "scores_best.md").read_text()


def test_aggregates_equal_rliable_on_the_same_score_matrix(grid):
    frame = read_scores(grid / "out" / "scores.csv")
    final = frame[frame.done & frame.is_last]
    matrix = {a: final[final.algorithm == a].pivot(index="seed", columns="dataset", values="normalized")
              .to_numpy() / 100 for a in sorted(final.algorithm.unique())}
    funcs = [metrics.aggregate_iqm, metrics.aggregate_mean, metrics.aggregate_median,
             metrics.aggregate_optimality_gap]
    rows = [line.split(",") for line in (grid / "out" / "aggregates.csv").read_text().splitlines()[1:]]
    ours = {(r[0], r[1]): [float(v) for v in r[2:5]] for r in rows}
    assert len(ours) == 4 * 4 and {a for a, _ in ours} == set(SHOWN.values())
    for algorithm, scores in matrix.items():
        np.random.seed(SEED)
        point, ci = library.get_interval_estimates({algorithm: scores}, lambda x: np.array([f(x) for f in funcs]),
                                                   reps=REPS)
        for i, name in enumerate(["IQM", "Mean", "Median", "Optimality gap"]):
            expected = [100 * point[algorithm][i], 100 * ci[algorithm][0, i], 100 * ci[algorithm][1, i]]
            assert ours[SHOWN[algorithm], name] == pytest.approx(expected, abs=1e-4)
    pairs = stats.probability_of_improvement(score_matrices(final_scores(frame)), reps=REPS, seed=SEED)
    assert len(pairs) == 6  # every pair of the four labels
    for x, y in [("dtql", "eda[beta=0.1]"), ("dql", "dtql")]:
        np.random.seed(SEED)
        point, ci = library.get_interval_estimates({"p": (matrix[x], matrix[y])},
                                                   metrics.probability_of_improvement, reps=REPS)
        mine = pairs[x, y]
        assert [mine.point, mine.low, mine.high] == pytest.approx([point["p"], *ci["p"][:, 0]], abs=1e-9)
        line = f"| {SHOWN[x]} | {SHOWN[y]} | {mine.point:.2f} [{mine.low:.2f}, {mine.high:.2f}] |"
        assert line in (grid / "out" / "prob_improvement.md").read_text()
    assert 0 < pairs["dtql", "eda[beta=0.1]"].point < 1  # the fakes overlap: not a trivial comparison


def test_iqm_is_the_mean_of_the_middle_half():
    scores = np.array([[10.0, 90.0], [20.0, 80.0], [30.0, 70.0], [40.0, 0.0]])  # 8 scores
    middle = sorted(scores.ravel())[2:6]  # drop the lowest and the highest quarter
    matrices = ScoreMatrices(["a", "b"], {"x": [0, 1, 2, 3]}, {"x": scores}, [])
    iqm = stats.aggregate_estimates(matrices, reps=REPS, seed=SEED)["x"]["IQM"]
    assert iqm.point == pytest.approx(np.mean(middle)) and iqm.low <= iqm.point <= iqm.high
    one = ScoreMatrices(["a", "b"], {"x": [0]}, {"x": scores[:1]}, [])
    assert stats.aggregate_estimates(one, reps=REPS, seed=SEED)["x"]["Mean"] == stats.Estimate(50.0, None, None)


def test_from_csv_regenerates_every_output_byte_for_byte(grid, tmp_path):
    first = outputs(grid / "out")
    figures = {f"{n}.{e}" for n in FIGURES for e in ("png", "pdf")}
    assert set(first) == {"scores.csv", "scores.md", "scores.tex", "scores_best.md", "scores_best.tex",
                          "scores_summary.csv", "aggregates.md", "aggregates.tex", "aggregates.csv",
                          "prob_improvement.md", "prob_improvement.tex", "prob_improvement.csv", "README.md", *figures}
    assert main(["aggregate", "--from-csv", str(grid / "out" / "scores.csv"), "--out", str(tmp_path / "b"),
                 "--reps", str(REPS), "--seed", str(SEED)]) == 0
    assert outputs(tmp_path / "b") == first
    provenance = json.loads((tmp_path / "b" / "provenance.json").read_text())
    assert "--from-csv" in provenance["command"] and len(provenance["runs"]) == 2 * 3 * 4 + 1
    (tmp_path / "b" / "scores.md").write_text("edited")
    (tmp_path / "b" / "learning_curves.png").unlink()
    aggregate(tmp_path / "b", from_csv=tmp_path / "b" / "scores.csv", reps=REPS, seed=SEED)  # in place
    assert outputs(tmp_path / "b") == first

    # A hand-written ABOUT.md in the output folder opens the README, and is kept as it is.
    about = "# The toy comparison\n\nBudgets: 40 steps per stage. Not the papers' numbers.\n"
    (tmp_path / "b" / "ABOUT.md").write_text(about)
    aggregate(tmp_path / "b", from_csv=tmp_path / "b" / "scores.csv", reps=REPS, seed=SEED)
    readme = (tmp_path / "b" / "README.md").read_text()
    assert readme.startswith(about + "\n## offdiff aggregate\n") and (tmp_path / "b" / "ABOUT.md").read_text() == about
    assert {k: v for k, v in outputs(tmp_path / "b").items() if k not in ("README.md", "ABOUT.md")} == {
        k: v for k, v in first.items() if k != "README.md"}


def test_tables_mark_best_missing_and_fewer_seeds(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        make_run(runs, "dql", HOPPER, seed)
        make_run(runs, "dtql", HOPPER, seed)
        make_run(runs, "dql", WALKER, seed)
    make_run(runs, "dtql", WALKER, 0)
    make_run(runs, "dtql", WALKER, 1, done=False)
    make_run(runs, "dql", "mujoco/hopper/expert-v0", 0)  # a task dtql never ran
    aggregate(tmp_path / "out", [runs], reps=REPS, seed=SEED)
    final = final_scores(read_scores(tmp_path / "out" / "scores.csv"))
    dtql = final[(final.algorithm == "dtql") & (final.dataset == HOPPER)].score
    assert dtql.mean() > final[(final.algorithm == "dql") & (final.dataset == HOPPER)].score.mean()
    md = (tmp_path / "out" / "scores.md").read_text().splitlines()
    assert md[:2] == ["| Task | Diffusion-QL | DTQL |", "|:---|---:|---:|"]
    rows = {line.split(" | ")[0][2:]: line for line in md[2:6]}
    assert list(rows) == ["hopper-medium", "walker2d-medium", "hopper-expert", "Average (3 tasks)"]  # by kind
    assert rows["hopper-medium"].endswith(f"| **{dtql.mean():.1f} ± {dtql.std(ddof=0):.1f}** (3) |")
    assert rows["hopper-medium"].count("**") == 2
    assert rows["walker2d-medium"].endswith("** (1)† |") and rows["walker2d-medium"].count("**") == 2  # fewer seeds
    assert rows["hopper-expert"].endswith("(1)† | — |") and "**" not in rows["hopper-expert"]
    dql = final[final.algorithm == "dql"].groupby("dataset").score.mean().mean()
    assert rows["Average (3 tasks)"] == f"| Average (3 tasks) | {dql:.1f} | — |"  # no rival: not bold
    tex = (tmp_path / "out" / "scores.tex").read_text()
    assert r"\textbf{" in tex and r"(1)$^\dagger$ & ---" in tex and r"\begin{tabular}{lcc}" in tex
    aggregates = (tmp_path / "out" / "aggregates.md").read_text()
    assert "tasks left out of the aggregates (not done by every algorithm): hopper-expert" in aggregates
    assert "DTQL: seeds left out of the aggregates (not done on every task): 1, 2" in aggregates
    assert "Diffusion-QL: seeds" not in aggregates and "No CI for DTQL" in aggregates
    rows = {line.split(" | ")[0][2:]: line for line in aggregates.splitlines()[2:4]}
    assert rows["Diffusion-QL"].endswith("] | 3 × 2 |") and rows["DTQL"].endswith("| 1 × 2 |")
    assert "[" not in rows["DTQL"]


def test_one_algorithm_one_seed_degrades_gracefully(tmp_path):
    make_run(tmp_path / "runs", "dql", HOPPER, 0)
    aggregate(tmp_path / "out", [tmp_path / "runs"], reps=REPS, seed=SEED)
    assert "Skipped: the probability of improvement needs two algorithms" in (
        tmp_path / "out" / "prob_improvement.md").read_text()
    agg = (tmp_path / "out" / "aggregates.md").read_text()
    assert "No CI for Diffusion-QL" in agg and "[" not in agg.splitlines()[2]
    assert (tmp_path / "out" / "performance_profiles.png").stat().st_size > 0
    # Nothing finished: the tables say so, no plot is drawn, and the stale ones are removed.
    make_run(tmp_path / "unfinished", "dql", HOPPER, 0, done=False)
    aggregate(tmp_path / "out", [tmp_path / "unfinished"], reps=REPS, seed=SEED)
    assert not list((tmp_path / "out").glob("*.p*"))
    assert "| hopper-medium | — |" in (tmp_path / "out" / "scores.md").read_text()
    assert "No aggregates" in (tmp_path / "out" / "aggregates.md").read_text()
    assert "Not drawn" in (tmp_path / "out" / "README.md").read_text()


def _error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(["aggregate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("offdiff: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_bad_run_folders_are_clear_errors_or_skipped_with_a_warning(tmp_path, capsys):
    runs, out = tmp_path / "runs", str(tmp_path / "out")
    make_run(runs, "dql", HOPPER, 0)
    make_run(runs, "dtql", HOPPER, 0)
    bad = make_run(runs, "dql", HOPPER, 9)
    with open(bad.evals, "a") as f:
        f.write('{"stage": "main", "step": 4')  # a line cut short by a kill
    assert f"{bad.evals} line 4 is not valid JSON" in _error(capsys, str(runs), "--out", out)
    assert not (tmp_path / "out").exists()
    assert main(["aggregate", str(runs), "--out", out, "--skip-bad", "--reps", str(REPS)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"offdiff: warning: skipped {bad.path.as_posix()}: {bad.evals} line 4")
    skipped = json.loads((tmp_path / "out" / "provenance.json").read_text())["skipped"]
    assert [s["run_dir"] for s in skipped] == [bad.path.as_posix()]
    assert bad.path.as_posix() not in (tmp_path / "out" / "scores.csv").read_text()

    bad.evals.write_text("".join(bad.evals.read_text().splitlines(keepends=True)[:2]))  # lost the last one
    assert "does not end with the final evaluation that DONE reports" in _error(capsys, str(runs), "--out", out)
    bad.evals.write_text(bad.evals.read_text().replace('"step": 100', '"step": "100"'))
    assert f"{bad.evals} line 1: missing or invalid 'step'" in _error(capsys, str(runs), "--out", out)
    bad.manifest.write_text(bad.manifest.read_text()[:50])
    assert f"{bad.manifest} is not valid JSON" in _error(capsys, str(runs), "--out", out)
    bad.manifest.unlink()
    assert f"{bad.manifest} is missing" in _error(capsys, str(runs), "--out", out)
    assert "is not a directory" in _error(capsys, str(tmp_path / "nowhere"), "--out", out)
    (tmp_path / "empty").mkdir()
    assert "no run folders" in _error(capsys, str(tmp_path / "empty"), "--out", out)


def test_bad_csv_arguments_and_duplicate_runs_are_clear_errors(tmp_path, capsys):
    csv, out = tmp_path / "scores.csv", str(tmp_path / "o")
    csv.write_text("a,b\n1,2\n")
    assert "is not an offdiff scores CSV" in _error(capsys, "--from-csv", str(csv), "--out", out)
    make_run(tmp_path / "runs", "dql", HOPPER, 0)
    aggregate(tmp_path / "good", [tmp_path / "runs"], reps=REPS)
    lines = (tmp_path / "good" / "scores.csv").read_text().splitlines()
    csv.write_text("\n".join([lines[0], lines[1].replace(",main,0,", ",main,x,", 1), *lines[2:]]) + "\n")
    assert f"{csv} line 2: stage_index='x' is not a finite number" in _error(capsys, "--from-csv", str(csv),
                                                                               "--out", out)
    csv.write_text("\n".join([*lines, lines[-1]]) + "\n")
    assert "several final evaluations for (dql, mujoco/hopper/medium-v0, 0)" in _error(
        capsys, "--from-csv", str(csv), "--out", out)
    assert not (tmp_path / "o").exists()
    assert "not both" in _error(capsys, str(tmp_path / "runs"), "--from-csv", str(csv), "--out", out)
    assert "--reps must be" in _error(capsys, str(tmp_path / "runs"), "--out", out, "--reps", "0")
    make_run(tmp_path / "runs" / "another_grid", "dql", HOPPER, 0)  # the same run collected twice
    assert "collect one grid at a time" in _error(capsys, str(tmp_path / "runs"), "--out", out)


def test_collects_a_real_run_folder(tmp_path):
    request = TrainRequest(algo="dql", source="toy:four_corners", seed=0, steps=20, device="cpu",
                           overrides={"hidden": "32", "batch_size": "64", "eval_candidates": "8", "n_timesteps": "5"},
                           protocol={"eval_every": 10, "eval_episodes": 10, "eval_envs": 5, "log_every": 10},
                           runs_root=tmp_path / "runs")
    summary = train(request, progress=False)
    run = plan(request).run_dir
    aggregate(tmp_path / "out", [tmp_path / "runs"], reps=REPS, seed=SEED)
    frame = read_scores(tmp_path / "out" / "scores.csv")
    evals = read_jsonl(run.evals)
    assert frame.step.tolist() == [10, 20] == [e["step"] for e in evals] == frame.total_step.tolist()
    assert frame.normalized.tolist() == [e["normalized_mean"] for e in evals]
    assert frame["return"].tolist() == [e["mean_return"] for e in evals]
    assert frame.episodes.tolist() == [10, 10] and frame.done.all() and frame.is_last.tolist() == [False, True]
    assert set(frame.algorithm) == {"dql"} and set(frame.dataset) == {"toy/four_corners"}
    assert set(frame.task) == {"toy-four_corners"} and set(frame.run_dir) == {run.path.as_posix()}
    assert frame[frame.is_last].normalized.item() == summary["final_normalized_score"]
    assert "| toy-four_corners |" in (tmp_path / "out" / "scores.md").read_text()


@pytest.mark.parametrize("name", ["quickstart", "local-suite", "budget-ladder"])
def test_committed_results_regenerate_from_their_csv(name, tmp_path):
    """results/<name>/ is what `aggregate --from-csv` makes of its scores.csv (text outputs to the byte)."""
    committed = Path(__file__).resolve().parents[1] / "results" / name
    for keep in ("scores.csv", "diagnostics.csv", "ABOUT.md"):
        if (committed / keep).is_file():
            (tmp_path / keep).write_bytes((committed / keep).read_bytes())
    aggregate(tmp_path, from_csv=tmp_path / "scores.csv")  # the defaults the committed files were made with
    texts = sorted(p.name for p in committed.iterdir() if p.suffix in (".md", ".csv", ".tex") and
                   (tmp_path / p.name).exists())
    assert {"README.md", "scores.md", "aggregates.md", "prob_improvement.md"} <= set(texts)
    for text in texts:
        assert (tmp_path / text).read_bytes() == (committed / text).read_bytes(), text
    for plot in FIGURES:
        assert (committed / f"{plot}.png").stat().st_size > 0 and (committed / f"{plot}.pdf").stat().st_size > 0


def test_local_suite_table_has_every_algorithm_on_every_task():
    root = Path(__file__).resolve().parents[1]
    frame = read_scores(root / "results/local-suite/scores.csv")
    final = frame[frame.done]
    grid = yaml.safe_load((root / "benchmarks/grids/local-suite.yaml").read_text())
    sources = [entry["source"] if isinstance(entry, dict) else entry for entry in grid["datasets"]]
    tasks = {source.removeprefix("minari:") for source in sources}
    assert len(tasks) == 4 and set(final.dataset) == tasks
    seeds = final.groupby(["algorithm", "dataset"]).seed.nunique()
    assert set(final.algorithm) == {"dql", "dtql", "eda"} and len(seeds) == 12 and (seeds >= 3).all()
