"""offdiff/records.py: the typed run records round-trip, read what older runs wrote, and name a damaged field."""

from __future__ import annotations

import json

import pytest

from offdiff.records import (
    BadRun,
    DataReturns,
    Done,
    Evaluation,
    Manifest,
    Metrics,
    PolicyDiagnostic,
    QCalibration,
    ReusedStage,
    RunDir,
    Scores,
    StageReport,
    diagnostic_from_json,
    metrics_from_json,
)

SCORES = Scores(returns=[1.0, 3.0], mean_return=2.0, normalized_mean=20.0, normalized_std=10.0, lengths=[5, 7],
                seeds=[11, 12], normalized=[10.0, 30.0])
MANIFEST = {"algorithm": "dql", "seed": 3, "config": {"hidden": 16}, "protocol": {"eval_every": 10},
            "stages": [{"name": "pretrain", "steps": 20}, {"name": "main", "steps": 30}],
            "dataset": {"dataset_id": "toy/four_corners", "task": "toy-four_corners", "source": "toy:four_corners",
                        "ref_scores": {"min": 0.0, "max": 1.0, "source": "offdiff toy task"}},
            "eval_seed": 9, "task": {"task": "hopper-medium"}, "plugin": None, "transforms": {}, "compile": False,
            "data_returns": {"episodes": 4, "terminal_episodes": 1, "mean_return": 2.5, "normalized_mean": 25.0},
            "versions": {"offdiff": "0.1.0"}, "host": "node1"}


def test_each_record_round_trips_through_json():
    rows = [Evaluation("main", 1, 30, SCORES), PolicyDiagnostic("pretrain", 0, 20, "behavior", SCORES),
            QCalibration("main", 1, 30, transitions=100, discount=0.99, mean_q=1.5, mean_return=1.2,
                         correlation=None, terminal_fraction=0.25),
            StageReport("pretrain", 0, 20, {"support_margin": 0.35, "outside_box": 0.5})]
    for row in rows:
        raw = json.loads(json.dumps(row.to_json()))
        assert (Evaluation.from_json if isinstance(row, Evaluation) else diagnostic_from_json)(raw, "x") == row
    for logged in (Metrics("main", 1, 5, {"critic_loss": 0.5, "lr": 1e-4}, steps_per_s=100.0, steps_averaged=5),
                   ReusedStage("pretrain", 0, 20, "runs/_cache/x.pt")):
        assert metrics_from_json(json.loads(json.dumps(logged.to_json())), "x") == logged
    assert rows[0].to_json() == {"stage": "main", "stage_index": 1, "step": 30, **SCORES.to_json()}
    assert rows[1].to_json()["kind"] == "policy" and rows[2].to_json()["kind"] == "q_calibration"
    manifest = Manifest.from_json(MANIFEST, "manifest.json")
    assert manifest.to_json() == MANIFEST and manifest.provenance == {"versions": {"offdiff": "0.1.0"}, "host": "node1"}
    assert manifest.stage_offsets == (0, 20) and manifest.trained_task == "hopper-medium"
    assert manifest.data_average == DataReturns(4, 1, 2.5, 25.0) and manifest.ref_source == "offdiff toy task"


def test_done_summarizes_the_last_evaluation_as_the_headline_and_the_best_as_online_selection():
    low = Scores(returns=[0.0], mean_return=0.0, normalized_mean=5.0, normalized_std=0.0)
    evals = [Evaluation("main", 0, 10, SCORES), Evaluation("main", 0, 20, low)]
    diagnostics = [PolicyDiagnostic("main", 0, 20, "behavior", low)]
    done = Done.summarize("runs/x", 1.234, {"main": 20}, {"device": "cpu"}, evals, diagnostics)
    assert (done.final_normalized_score, done.best_normalized_score_online_selection, done.best_step) == (5.0, 20.0,
                                                                                                          ["main", 10])
    assert done.gain_over_diagnostic == {"behavior": 0.0} and done.wall_time_s == 1.23 and done.episodes == 1
    assert Done.from_json(json.loads(json.dumps(done.to_json())), "DONE") == done
    bare = Done.summarize("runs/x", 1.0, {"main": 20}, {"device": "cpu"}, [], [])
    assert set(bare.to_json()) == {"run_dir", "wall_time_s", "steps", "compute"}, "no score keys without evaluations"


def test_older_runs_still_read(tmp_path):
    run = RunDir(tmp_path)
    old = {k: v for k, v in MANIFEST.items() if k not in ("task", "data_returns", "compile", "eval_seed", "plugin")}
    run.manifest.write_text(json.dumps(old))
    row = {"stage": "main", "stage_index": 1, "step": 30, "returns": [1.0], "mean_return": 1.0,
           "normalized_mean": 10.0, "normalized_std": 0.0}  # no lengths, seeds or per-episode normalized scores
    run.evals.write_text(json.dumps(row) + "\n" + '{"stage": "ma')  # and a line cut short by a kill
    run.done_marker.write_text(json.dumps({"run_dir": str(tmp_path), "final_normalized_score": 10.0}))
    manifest = run.read_manifest()
    assert manifest.trained_task == "toy-four_corners" and manifest.data_average is None and manifest.task is None
    assert [e.scores.normalized_mean for e in run.evaluations()] == [10.0] and run.evaluations()[0].to_json() == row
    assert run.done_summary().compute is None and run.done_summary().final_normalized_score == 10.0
    with pytest.raises(BadRun, match=r"evals.jsonl line 2 is not valid JSON"):
        run.evaluations(strict=True)


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.pop("seed"), "missing or invalid 'seed'"),
    (lambda m: m["stages"][1].update(steps="30"), "stages: missing or invalid 'steps'"),
    (lambda m: m["dataset"].pop("dataset_id"), "dataset: missing or invalid 'dataset_id'"),
    (lambda m: m["dataset"]["ref_scores"].update(source=3), "dataset: invalid 'ref_scores' source"),
])
def test_a_damaged_manifest_field_is_named(change, message):
    manifest = json.loads(json.dumps(MANIFEST))
    change(manifest)
    with pytest.raises(BadRun, match=message):
        Manifest.from_json(manifest, "manifest.json")


def test_a_damaged_row_is_named():
    with pytest.raises(BadRun, match="evals.jsonl line 3: normalized_mean is not finite"):
        Evaluation.from_json({**Evaluation("main", 0, 1, SCORES).to_json(), "normalized_mean": float("nan")},
                             "evals.jsonl line 3")
    report = StageReport("align", 2, 5, {"outside_box": 0.5}).to_json()
    with pytest.raises(BadRun, match="diagnostics.jsonl line 2: outside_box is not finite"):
        diagnostic_from_json({**report, "values": {"outside_box": float("inf")}}, "diagnostics.jsonl line 2")
    with pytest.raises(BadRun, match="diagnostics.jsonl line 2: missing or invalid 'values'"):
        diagnostic_from_json({**report, "values": [0.5]}, "diagnostics.jsonl line 2")
    with pytest.raises(BadRun, match="a row without a known kind"):
        diagnostic_from_json({"kind": "other"}, "diagnostics.jsonl line 1")
