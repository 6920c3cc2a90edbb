"""Paper-ready output of `offdiff aggregate`: names, order, domains, colours, every figure, the published numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from rliable import library, metrics

from offdiff.analysis import plots, stats
from offdiff.analysis.layout import PALETTE, Layout, present, read_layout
from offdiff.analysis.published import data_kind, papers
from offdiff.analysis.report import aggregate, analyse, figures, plugin_display_name
from offdiff.analysis.scores import read_scores, to_csv_bytes
from offdiff.cli import main
from offdiff.data.tasks import task_key
from offdiff.errors import OffdiffError
from offdiff.registry import get_algorithm

REPS, SEED = 200, 3
# (dataset, task key, score shift); D4RL's own data, Minari's re-collection, and data of neither.
DATASETS = [("mujoco/walker2d/medium-v0", "walker2d-medium", 10.0), ("D4RL/antmaze/umaze-v1", "antmaze-umaze", 30.0),
            ("mujoco/hopper/medium-v0", "hopper-medium", 0.0), ("local/hopper/expert-v0", "hopper-expert", 5.0)]
# algorithm -> (earlier stages' steps, final stage name and index, scores at main-stage steps 1k, 2k, 3k)
ALGOS = {"dql": (0, "main", 0, (40.0, 60.0, 45.0)), "dtql": (2000, "main", 1, (30.0, 50.0, 55.0)),
         "eda": (4000, "align", 2, (-12.0, 0.0, 8.0))}
SHOWN = {"dql": "Diffusion-QL", "dtql": "DTQL", "eda": "EDA"}
REF = {"mujoc": "Minari metadata", "D4RL/": "Minari metadata", "local": "local collection's metadata"}
FIGURES = ("learning_curves", "sample_efficiency", "aggregate_intervals", "performance_profiles",
           "probability_of_improvement")


def scores_csv(path: Path, datasets=DATASETS, seeds=(0, 1, 2)) -> Path:
    """A small fixed scores CSV: every algorithm on every dataset, three evaluations of its final stage."""
    rows = []
    for algo, (offset, stage, index, levels) in ALGOS.items():
        for dataset, task, shift in datasets:
            for seed in seeds:
                run = f"runs/g/{algo}/{dataset.replace('/', '-')}/abc/seed_{seed}"
                for k, level in enumerate(levels, start=1):
                    score = level + shift + 3.0 * seed
                    rows.append({"algorithm": algo, "algo": algo, "dataset": dataset, "task": task, "seed": seed,
                                 "stage": stage, "stage_index": index, "step": 1000 * k,
                                 "total_step": offset + 1000 * k, "normalized": score, "normalized_std": 1.0,
                                 "return": score, "episodes": 10, "is_last": k == 3, "done": True,
                                 "config_hash": "abc", "run_dir": run, "ref_scores_source": REF[dataset[:5]]})
    path.write_bytes(to_csv_bytes(rows))
    return path


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("figures")
    aggregate(folder, from_csv=scores_csv(folder / "scores.csv"), reps=REPS, seed=SEED,
              layout=Layout(compare_published=True))
    return folder


@pytest.fixture(scope="module")
def built(out: Path) -> dict[str, Figure]:
    """The figure objects `aggregate` drew into `out` (to inspect their artists)."""
    analysis = analyse(read_scores(out / "scores.csv"), REPS, SEED)
    with plots.styled():
        return {name: build() for name, build in figures(analysis).items()}


def line_colors(fig: Figure) -> dict[str, str]:
    """Algorithm (the curves' gid) -> colour of its lines, over every panel; one colour per algorithm or fail."""
    seen: dict[str, set[str]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_gid():
                seen.setdefault(line.get_gid(), set()).add(to_hex(line.get_color()))
    assert all(len(c) == 1 for c in seen.values()), seen
    return {a: c.pop() for a, c in seen.items()}


def legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_every_figure_is_written_as_png_and_pdf(out, built):
    assert set(built) == set(FIGURES)
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pdf = (out / f"{name}.pdf").read_bytes()
        assert pdf[:5] == b"%PDF-" and b"/Type3" not in pdf and b"/CIDFontType2" in pdf  # TrueType: no Type 3 fonts
    readme = (out / "README.md").read_text()
    assert all(f"| {name}.png |" in readme for name in FIGURES)


def test_one_colour_per_algorithm_in_every_figure(built):
    expected = {SHOWN[a]: PALETTE[i].lower() for i, a in enumerate(ALGOS)}
    assert len(set(expected.values())) == 3
    for name in ("learning_curves", "sample_efficiency", "performance_profiles"):
        assert line_colors(built[name]) == expected, name
    # Bars: interval estimates (one row per algorithm, top down) and P(X > Y) (in X's colour).
    ax = built["aggregate_intervals"].axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    bars = sorted((p for p in ax.patches if isinstance(p, Rectangle)), key=lambda p: p.get_y())
    assert labels == list(SHOWN.values()) and len(bars) == 3
    assert [to_hex(b.get_facecolor(), keep_alpha=False) for b in bars] == [expected[a] for a in labels]
    ax = built["probability_of_improvement"].axes[0]
    pairs = [t.get_text() for t in ax.get_yticklabels()]
    bars = sorted((p for p in ax.patches if isinstance(p, Rectangle)), key=lambda p: p.get_y())
    assert pairs == ["Diffusion-QL", "Diffusion-QL", "DTQL"]
    assert [to_hex(b.get_facecolor(), keep_alpha=False) for b in bars] == [expected[x] for x in pairs[:len(bars)]]
    assert [t.get_text() for t in built["probability_of_improvement"].axes[1].get_yticklabels()] == [
        "DTQL", "EDA", "EDA"]


def test_legends_name_algorithms_in_order_with_their_pretraining(built):
    curves = ["Diffusion-QL", "DTQL (after 2k pretraining steps)", "EDA (after 4k pretraining steps)"]
    assert legend_texts(built["learning_curves"]) == curves
    assert legend_texts(built["sample_efficiency"]) == curves
    assert legend_texts(built["performance_profiles"]) == list(SHOWN.values())


def test_curves_start_every_algorithm_at_its_main_stage(built):
    for name in ("learning_curves", "sample_efficiency"):
        fig = built[name]
        for ax in fig.axes:
            for line in ax.get_lines():
                if line.get_gid():
                    assert list(line.get_xdata()) == [1000, 2000, 3000], (name, line.get_gid())
            if ax.get_visible() and ax.get_lines():
                assert ax.get_xlim()[0] == 0
    panels = [ax.get_title() for ax in built["learning_curves"].axes if ax.get_visible()]
    assert panels == ["hopper-medium", "walker2d-medium", "hopper-expert", "antmaze-umaze"]  # by domain, then kind
    # The IQM curve is the IQM over seeds and tasks at each step; its band is drawn (three seeds).
    ax = built["sample_efficiency"].axes[0]
    eda = next(line for line in ax.get_lines() if line.get_gid() == "EDA")
    per_step = [[level + shift + 3.0 * s for _, _, shift in DATASETS for s in range(3)] for level in ALGOS["eda"][3]]
    assert eda.get_ydata() == pytest.approx([metrics.aggregate_iqm(np.array(v)) for v in per_step])
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3
    assert "3 runs × 4 tasks" in ax.get_title()


def test_axis_ranges_fit_the_data(built, tmp_path):
    ax = built["performance_profiles"].axes[0]
    best = max(ALGOS["dql"][3][2], ALGOS["dtql"][3][2]) + 30 + 6  # antmaze, seed 2
    lowest = ALGOS["eda"][3][2] + 0.0  # EDA's last score on hopper-medium, seed 0
    assert ax.get_xlim() == (min(0, 10 * np.floor(lowest / 10)), 10 * np.ceil(best / 10 + 0.05)) == (0, 100)
    assert ax.get_ylim() == (-0.02, 1.02) and ax.get_title().endswith("over 3 runs × 4 tasks")
    ax = built["probability_of_improvement"].axes[0]
    assert ax.get_xlim() == (-0.02, 1.02)
    titles = [a.get_title() for a in built["aggregate_intervals"].axes]
    assert titles == ["IQM", "Mean", "Median", "Optimality gap (lower is better)"]
    for a, metric in zip(built["aggregate_intervals"].axes, titles, strict=True):
        ticks = [line.get_segments()[0][0][0] for line in a.collections]  # each point estimate's x
        low, high = a.get_xlim()
        assert all(low < x < high for x in ticks), metric  # none on the frame
    assert "3 runs × 4 tasks" in built["aggregate_intervals"]._supxlabel.get_text()
    # --tau-max sets the right end; a left end past it is an error.
    low_scores = stats.ScoreMatrices(["t"], {"a": [0, 1]}, {"a": np.array([[-25.0], [42.0]])}, [])
    taus = 100 * stats.profile_thresholds(low_scores)
    assert (taus[0], taus[-1]) == (-30, 50)
    assert 100 * stats.profile_thresholds(low_scores, tau_max=80)[-1] == 80
    with pytest.raises(OffdiffError, match="tau_max -40 must be above"):
        stats.profile_thresholds(low_scores, tau_max=-40)


def test_sample_efficiency_equals_rliable_per_step():
    rng = np.random.default_rng(0)
    scores = rng.normal(50, 20, size=(5, 3, 4))
    np.random.seed(SEED)
    point, ci = library.get_interval_estimates(
        {"x": scores / 100}, lambda s: np.array([metrics.aggregate_iqm(s[..., j]) for j in range(s.shape[-1])]),
        reps=REPS)
    mine = stats.sample_efficiency({"x": scores}, REPS, SEED)["x"]
    assert [e.point for e in mine] == pytest.approx(100 * point["x"])
    assert [e.low for e in mine] == pytest.approx(100 * ci["x"][0]) and [e.high for e in mine] == pytest.approx(
        100 * ci["x"][1])


def test_tables_name_tasks_group_domains_and_average(out):
    md = (out / "scores.md").read_text().split("\n\n")[0].splitlines()
    assert md[0] == "| Task | Diffusion-QL | DTQL | EDA |"
    assert [line.split(" | ")[0][2:] for line in md[2:]] == [
        "hopper-medium", "walker2d-medium", "hopper-expert", "Average (Locomotion, 3 tasks)", "antmaze-umaze",
        "Average (all 4 tasks)"]
    final = {a: np.mean([ALGOS[a][3][2] + shift + 3.0 for *_, shift in DATASETS]) for a in ALGOS}  # seed mean: +3
    assert md[-1] == f"| Average (all 4 tasks) | {final['dql']:.1f} | **{final['dtql']:.1f}** | {final['eda']:.1f} |"
    tex = (out / "scores.tex").read_text()
    assert r"Average (Locomotion, 3 tasks) & " in tex and tex.count(r"\midrule") == 4
    for name in ("aggregates", "prob_improvement"):
        assert (out / f"{name}.tex").read_text().count(r"\begin{tabular}") == 1
        assert (out / f"{name}.csv").read_text().count("\n") == 1 + {"aggregates": 12, "prob_improvement": 3}[name]
    assert "Optimality gap ↓ | Runs × tasks |" in (out / "aggregates.md").read_text()
    assert ("Datasets: hopper-medium = mujoco/hopper/medium-v0, walker2d-medium = mujoco/walker2d/medium-v0, "
            "hopper-expert = local/hopper/expert-v0, antmaze-umaze = D4RL/antmaze/umaze-v1.") in tex
    summary = (out / "scores_summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 4 * 3 * 2
    assert summary[1] == "hopper-medium,Locomotion,Diffusion-QL,final,48.0000,2.4495,3"
    assert summary[2] == "hopper-medium,Locomotion,Diffusion-QL,best,63.0000,2.4495,3"  # its peak mid-training
    differ = ("Reference scores differ between tasks: hopper-medium, walker2d-medium, antmaze-umaze: Minari metadata; "
              "hopper-expert: local collection's metadata.")
    assert differ in (out / "scores.md").read_text() and differ in (out / "aggregates.md").read_text()


def test_published_numbers_beside_measured_under_each_papers_rule(out):
    md = (out / "published.md").read_text()
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in md.split("\n\n")[0].splitlines()[2:]}
    assert list(rows) == ["hopper-medium§", "walker2d-medium§", "antmaze-umaze"]  # local data is not compared
    dql, dtql, eda = papers()["dql"], papers()["dtql"], papers()["eda"]
    assert rows["antmaze-umaze"][0] == f"{dql.scores['antmaze-umaze'][0]:.1f}‡"  # a recalled number is marked
    assert rows["hopper-medium§"][4] == "{:.1f} ± {:.1f}".format(*eda.scores["hopper-medium"])
    # Diffusion-QL's paper reports the best evaluation over training, DTQL's the last one: so does the table.
    best_dql = np.mean([ALGOS["dql"][3][1] + 3.0 * s for s in range(3)])
    last_dtql = np.mean([ALGOS["dtql"][3][2] + 3.0 * s for s in range(3)])
    assert rows["hopper-medium§"][1].startswith(f"{best_dql:.1f} [") and rows["hopper-medium§"][1].endswith("(3)")
    assert rows["hopper-medium§"][3].startswith(f"{last_dtql:.1f} [")
    assert dql.citation in md and "best evaluation over training (online model selection)" in md
    assert "Not compared (not D4RL data or no published score): hopper-expert." in md
    assert "§ Minari's re-collection" in md and dtql.rule == "final"
    csv = (out / "published.csv").read_text().splitlines()
    assert len(csv) == 1 + 3 * 3 and "antmaze-umaze,D4RL/antmaze/umaze-v1,antmaze-umaze,d4rl,Diffusion-QL,dql,best," \
        "93.4,,false," in csv[1 + 6]
    assert r"\multicolumn{2}{c}{Diffusion-QL}" in (out / "published.tex").read_text()


def test_published_table_keys_are_offdiff_task_keys():
    assert data_kind("hopper-medium-v2") == data_kind("D4RL/kitchen/mixed-v2") == "d4rl"
    assert data_kind("local/hopper/medium-v0") is None and data_kind("toy/four_corners") is None
    for algo, paper in papers().items():
        assert paper.rule in ("final", "best") and paper.citation and set(paper.unverified) <= set(paper.scores)
        cls = get_algorithm(algo)
        for key in paper.scores:
            assert task_key(f"{key}-v2") == key and cls.preset(key), (algo, key)  # the plugin has its preset


def test_layout_overrides_names_order_and_domains_and_regenerates(tmp_path, capsys):
    csv = scores_csv(tmp_path / "scores.csv")
    layout = tmp_path / "my.yaml"
    layout.write_text("names: {eda: 'EDA (ours)', D4RL/antmaze/umaze-v1: AntMaze U}\n"
                      "algorithm_order: [eda]\ntask_order: [D4RL/antmaze/umaze-v1]\n"
                      "domains: {local/hopper/expert-v0: Expert data}\ntau_max: 120\n")
    assert main(["aggregate", "--from-csv", str(csv), "--out", str(tmp_path / "a"), "--layout", str(layout),
                 "--reps", str(REPS)]) == 0
    md = (tmp_path / "a" / "scores.md").read_text().splitlines()
    assert md[0] == "| Task | EDA (ours) | Diffusion-QL | DTQL |"
    assert [line.split(" | ")[0][2:] for line in md[2:8]] == [
        "AntMaze U", "hopper-medium", "walker2d-medium", "Average (Locomotion, 2 tasks)", "hopper-expert",
        "Average (all 4 tasks)"]
    assert read_layout(tmp_path / "a" / "layout.yaml") == read_layout(layout)
    assert "--from-csv scores.csv --layout layout.yaml --out DIR" in (tmp_path / "a" / "README.md").read_text()
    capsys.readouterr()
    # The copy regenerates the folder byte for byte.
    assert main(["aggregate", "--from-csv", str(tmp_path / "a" / "scores.csv"), "--out", str(tmp_path / "b"),
                 "--layout", str(tmp_path / "a" / "layout.yaml"), "--reps", str(REPS)]) == 0
    for name in (p.name for p in (tmp_path / "a").iterdir() if p.name != "provenance.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # Mistakes are one-line errors, before anything is drawn.
    for text, message in [("names: {ppo: PPO}\n", "ppo is neither an algorithm label nor a dataset id"),
                          ("colour: red\n", "unknown key 'colour'"), ("tau_max: high\n", "tau_max must be a number"),
                          ("names: {dql: DTQL}\n", "would both be shown as 'DTQL'"),
                          ("algorithm_order: [sac]\n", "sac not in this collection")]:
        layout.write_text(text)
        assert main(["aggregate", "--from-csv", str(csv), "--out", str(tmp_path / "c"), "--layout", str(layout)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("offdiff: error: ") and message in err and err.count("\n") == 1


def test_datasets_sharing_a_task_key_keep_their_ids_and_plugins_name_themselves(tmp_path):
    datasets = [("mujoco/hopper/medium-v0", "hopper-medium", 0.0), ("local/hopper/medium-v0", "hopper-medium", 5.0)]
    frame = read_scores(scores_csv(tmp_path / "s.csv", datasets))
    shown = present(frame, Layout(), plugin_display_name)
    assert shown.task_names == ["local/hopper/medium-v0", "mujoco/hopper/medium-v0"]
    assert shown.algorithms == SHOWN and all(get_algorithm(a).display_name == n for a, n in SHOWN.items())
    assert present(frame, Layout(), lambda algo: algo).algorithm_names == list(ALGOS)  # no plugin: its name


def test_algorithms_with_fewer_runs_say_so(tmp_path):
    csv = scores_csv(tmp_path / "scores.csv")
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(line for line in lines if not (line.startswith("eda,") and "/seed_2," in line)))
    analysis = analyse(read_scores(csv), REPS, SEED)
    with plots.styled():
        fig = figures(analysis)["aggregate_intervals"]()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "Diffusion-QL (3 runs)", "DTQL (3 runs)", "EDA (2 runs)"]
    assert fig._supxlabel.get_text().endswith("over 2–3 runs × 4 tasks")
