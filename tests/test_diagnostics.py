"""Stage diagnostics and compute records: the plugins' diagnostic policies and Q calibration after their stages,
kill-and-resume around a stage end, the cache, and `offdiff aggregate`'s diagnostics CSV and table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from offdiff.analysis.report import aggregate
from offdiff.data.episodes import Episodes
from offdiff.data.transitions import Transitions
from offdiff.errors import OffdiffError
from offdiff.io import read_jsonl
from offdiff.train import runner
from offdiff.train.runner import TrainRequest, plan, train

PROTOCOL = {"eval_every": 10, "eval_episodes": 6, "eval_envs": 3, "log_every": 5, "checkpoint_every": 5}
TINY = {
    "dtql": ("toy:grid25_hard", {"diffusion_hidden": "16", "policy_hidden": "16", "critic_hidden": "16",
                                 "batch_size": "32", "eval_candidates": "4"}),
    "eda": ("toy:gaussians8", {"hidden": "16", "time_dim": "8", "num_blocks": "1", "critic_hidden": "16",
                               "behavior_batch_size": "16", "critic_batch_size": "16", "align_batch_size": "4",
                               "num_candidates": "4", "solver_nfe": "2", "eval_candidates": "2"}),
    "dql": ("toy:four_corners", {"hidden": "16", "batch_size": "32", "eval_candidates": "4", "n_timesteps": "2"}),
}


def _request(root: Path, algo: str, **overrides: str) -> TrainRequest:
    source, tiny = TINY[algo]
    return TrainRequest(algo=algo, source=source, steps=10, overrides={**tiny, **overrides}, protocol=PROTOCOL,
                        device="cpu", runs_root=root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run of each algorithm (read only)."""
    root = tmp_path_factory.mktemp("runs")
    for algo in TINY:
        train(_request(root, algo), progress=False)
    return root


def _folder(root: Path, algo: str, **overrides: str):
    return plan(_request(root, algo, **overrides)).run_dir


def test_returns_to_go_end_at_terminals_and_are_cut_at_timeouts():
    rewards = np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.float32)
    terminals = np.array([0, 0, 1, 0, 0, 0, 0], bool)  # episode 1 terminates; 2 times out; 3 ends with the data
    timeouts = np.array([0, 0, 0, 0, 1, 0, 0], bool)
    t = Transitions(np.zeros((7, 1)), np.zeros((7, 1)), rewards, np.zeros((7, 1)), terminals, timeouts)
    episodes = Episodes.of(t)
    assert episodes.ends.tolist() == [2, 4, 6] and episodes.terminal.tolist() == [True, False, False]
    assert episodes.returns.tolist() == [6.0, 9.0, 13.0]
    assert episodes.row_terminal().tolist() == [True] * 3 + [False] * 4
    np.testing.assert_allclose(episodes.returns_to_go(rewards, 0.5),
                               [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 4 + 0.5 * 5, 5, 6 + 0.5 * 7, 7])


def test_diagnostic_policies_after_their_stage_for_dtql_and_eda_none_for_dql(runs):
    expected = {"dtql": {("policy", "pretrain", "diffusion"), ("q_calibration", "pretrain", None),
                         ("q_calibration", "main", None)},
                "eda": {("policy", "behavior", "behavior"), ("q_calibration", "critic", None),
                        ("report", "behavior", None), ("report", "align", None)},
                "dql": {("q_calibration", "main", None)}}
    for algo, kinds in expected.items():
        run = _folder(runs, algo)
        rows = read_jsonl(run.diagnostics)
        assert {(r["kind"], r["stage"], r.get("policy")) for r in rows} == kinds, algo
        assert all(r["step"] == 10 for r in rows), "logged at the end of the stage"
        evals = read_jsonl(run.evals)
        summary = json.loads(run.done_marker.read_text())
        final = summary["final_normalized_score"]
        policies = [r for r in rows if r["kind"] == "policy"]
        for row in policies:  # the run's own eval episodes and reset seeds, through the same evaluation path
            assert row["seeds"] == evals[-1]["seeds"] and len(row["returns"]) == PROTOCOL["eval_episodes"]
            assert summary["diagnostic_scores"] == {row["policy"]: row["normalized_mean"]}
            assert summary["gain_over_diagnostic"] == {row["policy"]: final - row["normalized_mean"]}
        if not policies:
            assert "diagnostic_scores" not in summary and "gain_over_diagnostic" not in summary
        for row in rows:
            if row["kind"] == "q_calibration":
                assert row["transitions"] == 10_000 and row["terminal_fraction"] == 1.0  # one-step bandits
                assert row["discount"] == 0.99 and np.isfinite(row["mean_q"])
                assert row["mean_return"] == pytest.approx(json.loads(run.manifest.read_text())
                                                           ["data_returns"]["mean_return"])  # r: one step


def test_eda_reports_its_support_margin_and_how_much_of_its_samples_leave_the_box(runs):
    rows = [r for r in read_jsonl(_folder(runs, "eda").diagnostics) if r["kind"] == "report"]
    values = {r["stage"]: r["values"] for r in rows}
    assert set(values["behavior"]) == {"support_margin", "share_data_preferred"}
    assert set(values["align"]) == {"outside_box", "behavior_outside_box"}
    assert np.isfinite(values["behavior"]["support_margin"])
    for share in (values["behavior"]["share_data_preferred"], *values["align"].values()):
        assert 0.0 <= share <= 1.0


def test_a_plugins_report_is_logged_and_printed_and_a_non_finite_value_is_an_error(tmp_path, monkeypatch, capsys):
    from offdiff_dql import DiffusionQL

    monkeypatch.setattr(DiffusionQL, "stage_report", lambda self, stage, data, generator: {"rows": float(len(data))})
    train(_request(tmp_path / "a", "dql"), progress=False)
    rows = [r for r in read_jsonl(_folder(tmp_path / "a", "dql").diagnostics) if r["kind"] == "report"]
    assert [(r["stage"], r["values"]) for r in rows] == [("main", {"rows": 10_000.0})]
    assert "[dql] report after main: rows 1e+04" in capsys.readouterr().err
    monkeypatch.setattr(DiffusionQL, "stage_report", lambda self, stage, data, generator: {"bad": float("nan")})
    with pytest.raises(OffdiffError, match="dql's stage_report after main: bad = nan is not finite"):
        train(_request(tmp_path / "b", "dql"), progress=False)
    monkeypatch.setattr(DiffusionQL, "stage_report", lambda self, stage, data, generator: {"bad": "high"})
    with pytest.raises(OffdiffError, match="dql's stage_report after main: bad = 'high' is not a number"):
        train(_request(tmp_path / "c", "dql"), progress=False)


def test_compute_is_recorded_per_stage(runs):
    summary = json.loads(_folder(runs, "eda").done_marker.read_text())
    compute = summary["compute"]
    assert compute["device"].startswith("cpu") and compute["complete"] is True
    assert list(compute["stages"]) == ["align", "behavior", "critic"]  # DONE is written with sorted keys
    for stage in compute["stages"].values():
        assert stage["device_s"] == pytest.approx(stage["train_s"] + stage["eval_s"] + stage["diagnostics_s"],
                                                  abs=2e-3)
        assert stage["train_s"] > 0
    assert compute["stages"]["behavior"]["diagnostics_s"] > 0 and compute["stages"]["align"]["eval_s"] > 0
    assert compute["stages"]["behavior"]["eval_s"] == 0  # the behaviour stage is not evaluated on the schedule
    assert compute["run_device_s"] == pytest.approx(sum(s["device_s"] for s in compute["stages"].values()), abs=2e-3)
    # The acting throughput of the latest evaluation, where a stage was evaluated (the alignment only): more
    # actions per second than the whole evaluation's (environments included) could give.
    align = compute["stages"]["align"]
    assert align["eval_actions_per_s"] > 0 and "eval_actions_per_s" not in compute["stages"]["behavior"]


class Killed(Exception):
    pass


@pytest.mark.parametrize("where", ["before", "after"])
def test_kill_around_a_stage_end_leaves_the_logs_of_a_straight_run(runs, tmp_path, monkeypatch, where):
    """Killed after the behaviour stage's diagnostics but before its last checkpoint, or just after that checkpoint:
    the resumed run's logs equal those of the run that was never killed, and so do its parameters."""
    save = runner.Trainer._save_checkpoint

    def dies(self, stage_index, step):
        if where == "after":
            save(self, stage_index, step)
        if (stage_index, step) == (0, 10):
            raise Killed
        if where == "before":
            save(self, stage_index, step)

    monkeypatch.setattr(runner.Trainer, "_save_checkpoint", dies)
    with pytest.raises(Killed):
        train(_request(tmp_path, "eda"), progress=False)
    killed = _folder(tmp_path, "eda")
    assert [r["stage"] for r in read_jsonl(killed.diagnostics)] == ["behavior", "behavior"]  # policy, report
    monkeypatch.setattr(runner.Trainer, "_save_checkpoint", save)
    train(_request(tmp_path, "eda"), progress=False)
    straight = _folder(runs, "eda")
    for log in ("diagnostics", "evals"):
        assert read_jsonl(getattr(killed, log)) == read_jsonl(getattr(straight, log)), log
    steps = [(m["stage_index"], m["step"]) for m in read_jsonl(killed.metrics)]
    assert steps == [(m["stage_index"], m["step"]) for m in read_jsonl(straight.metrics)]
    ours, theirs = (torch.load(r.checkpoint, weights_only=False)["algorithm"]["modules"] for r in (killed, straight))
    for module, state in theirs.items():
        for key, value in state.items():
            assert torch.equal(value, ours[module][key]), f"{module}.{key}"
    assert json.loads(killed.done_marker.read_text())["compute"]["complete"] is True


def test_a_stage_from_the_cache_gets_the_same_diagnostics_and_its_producers_compute(runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs / "_cache", root / "_cache")
    train(_request(root, "eda", beta="0.5"), progress=False)
    reused = _folder(root, "eda", beta="0.5")
    producer = _folder(runs, "eda")
    assert read_jsonl(reused.diagnostics) == read_jsonl(producer.diagnostics)
    stages = json.loads(reused.done_marker.read_text())["compute"]["stages"]
    produced = json.loads(producer.done_marker.read_text())["compute"]["stages"]
    assert stages["behavior"]["cached"] is True and stages["behavior"]["train_s"] < produced["behavior"]["train_s"]
    assert stages["behavior"]["producer_device_s"] == pytest.approx(produced["behavior"]["device_s"], abs=2e-3)
    assert stages["behavior"]["producer_train_s"] == pytest.approx(produced["behavior"]["train_s"], abs=2e-3)


def test_aggregate_writes_the_diagnostics_and_regenerates_them_from_the_csv(runs, tmp_path):
    out = tmp_path / "out"
    result = aggregate(out, runs=[runs / "train"], reps=20, seed=0)
    assert {"diagnostics.csv", "diagnostics.md"} <= set(result.files)
    table = (out / "diagnostics.md").read_text()
    main = table[:table.index("## Stage reports")]
    rows = {line.split(" | ")[1]: line.split(" | ") for line in main.splitlines() if line.startswith("| toy")}
    assert set(rows) == {"DTQL", "EDA", "Diffusion-QL"}
    assert rows["EDA"][4] == "behavior" and rows["DTQL"][4] == "diffusion" and rows["Diffusion-QL"][4] == "—"
    eda = json.loads(_folder(runs, "eda").done_marker.read_text())
    assert rows["EDA"][6] == f"{eda['gain_over_diagnostic']['behavior']:.1f} ± 0.0"
    train_s = sum(stage["train_s"] for stage in eda["compute"]["stages"].values())
    assert rows["EDA"][-1] == f"{train_s:.0f} |", "training-s: the stages' training seconds, one seed"
    assert "diagnostics.csv" in (out / "README.md").read_text()
    reports = table[table.index("## Stage reports"):].splitlines()
    assert "| toy-gaussians8 | EDA | behavior | support_margin | 1 |" in "\n".join(reports)
    assert "| toy-gaussians8 | EDA | align | outside_box | 1 |" in "\n".join(reports)
    assert not any("| DTQL |" in line or "| Diffusion-QL |" in line for line in reports)  # they report nothing
    assert "compute.md" not in result.files  # no task common to all three: no aggregate to set against compute
    again = tmp_path / "again"
    aggregate(again, from_csv=out / "scores.csv", reps=20, seed=0)
    for name in result.files:
        if name != "provenance.json":
            assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_aggregate_sets_the_iqm_against_the_runs_compute(runs, tmp_path):
    result = aggregate(tmp_path / "out", runs=[runs / "train" / "eda"], reps=20, seed=0)
    assert {"compute.md", "score_vs_compute.png", "score_vs_compute.pdf"} <= set(result.files)
    row = next(line.split(" | ") for line in (tmp_path / "out" / "compute.md").read_text().splitlines()
               if line.startswith("| EDA"))
    compute = json.loads(_folder(runs, "eda").done_marker.read_text())["compute"]
    assert row[4] == f"{compute['run_device_s']:.0f}"
    assert row[5] == f"{sum(stage['train_s'] for stage in compute['stages'].values()):.0f}"
    assert row[6].rstrip(" |") == f"{compute['stages']['align']['eval_actions_per_s']:.0f}"


def test_runs_without_diagnostics_aggregate_as_before(runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(runs / "train", old)
    for run in old.rglob("DONE"):
        (run.parent / "diagnostics.jsonl").unlink()
        manifest = json.loads((run.parent / "manifest.json").read_text())
        del manifest["data_returns"]
        (run.parent / "manifest.json").write_text(json.dumps(manifest))
        summary = json.loads(run.read_text())
        del summary["compute"]
        run.write_text(json.dumps(summary))
    result = aggregate(tmp_path / "out", runs=[old], reps=20, seed=0)
    assert not {"diagnostics.csv", "diagnostics.md", "compute.md", "score_vs_compute.png"} & set(result.files)
    assert "diagnostics" not in (tmp_path / "out" / "README.md").read_text()


def test_a_damaged_diagnostics_log_is_a_clear_error_or_skipped(runs, tmp_path, capsys):
    from offdiff.cli import main

    copy = tmp_path / "runs"
    shutil.copytree(runs / "train", copy)
    (log,) = [p for p in copy.rglob("diagnostics.jsonl") if "/eda/" in p.as_posix()]
    log.write_text(log.read_text()[:-20])
    assert main(["aggregate", str(copy), "--out", str(tmp_path / "out"), "--reps", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{log} line " in err and "is not valid JSON" in err
    assert not (tmp_path / "out").exists(), "nothing half-written"
    assert main(["aggregate", str(copy), "--out", str(tmp_path / "out"), "--reps", "20", "--skip-bad"]) == 0
    assert "diagnostics left out" in capsys.readouterr().err
    table = (tmp_path / "out" / "diagnostics.md").read_text()
    assert "| toy-gaussians8 | EDA | 1 |" in table and "| DTQL |" in table


def test_dry_run_names_each_stages_diagnostics(tmp_path, capsys):
    from offdiff.cli import main

    assert main(["train", "--algo", "eda", "--dataset", "toy:gaussians8", "--steps", "10", "--runs-dir",
                 str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "behavior: 10 steps x batch 2048, not evaluated, cacheable; then diagnostic policy behavior\n" in out
    assert "critic: 10 steps x batch 256, not evaluated, cacheable; then Q calibration\n" in out
    assert "align: 10 steps x batch 256, evaluated\n" in out


def test_q_calibration_on_episodes_that_terminate_or_time_out(d4rl_hdf5_file, tmp_path):
    """The D4RL-layout file's episodes 0 and 2 terminate and the other three time out (tests/conftest.py)."""
    import h5py

    request = TrainRequest(algo="dql", source=f"hdf5:{d4rl_hdf5_file}", eval_env="Hopper-v5", task="none",
                           ref_scores="0,100", steps=4, overrides=TINY["dql"][1], device="cpu", runs_root=tmp_path,
                           protocol={"eval_episodes": 2, "eval_envs": 2, "log_every": 2})
    train(request, progress=False)
    run = plan(request).run_dir
    (row,) = read_jsonl(run.diagnostics)
    with h5py.File(d4rl_hdf5_file) as f:
        rewards, terminals, timeouts = (np.asarray(f[k]) for k in ("rewards", "terminals", "timeouts"))
    returns, running = np.zeros(len(rewards)), 0.0
    for i in reversed(range(len(rewards))):
        running = rewards[i] + (0.0 if terminals[i] or timeouts[i] else 0.99 * running)
        returns[i] = running
    assert row["transitions"] == 200 and row["terminal_fraction"] == (30 + 20) / 200
    assert row["mean_return"] == pytest.approx(returns.mean(), rel=1e-6)
    data = json.loads(run.manifest.read_text())["data_returns"]
    assert (data["episodes"], data["terminal_episodes"]) == (5, 2)
    assert data["mean_return"] == pytest.approx(rewards.sum() / 5, rel=1e-6)


def test_timed_act_counts_the_rows_it_answered_and_its_own_seconds():
    from offdiff.eval import TimedAct

    timed = TimedAct(lambda obs: obs * 2)
    out = timed(torch.ones(3, 2))
    timed(torch.ones(5, 2))
    assert out.device.type == "cpu" and torch.equal(out, torch.full((3, 2), 2.0))
    assert timed.rows == 8 and timed.seconds > 0 and timed.actions_per_s == pytest.approx(8 / timed.seconds)
