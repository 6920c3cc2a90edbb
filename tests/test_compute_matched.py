"""benchmarks/compute_matched.py: stage budgets in the papers' proportions at measured seconds per step."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from offdiff.errors import OffdiffError

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compute_matched", ROOT / "benchmarks" / "compute_matched.py")
compute_matched = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compute_matched)


def test_stages_get_the_papers_proportions_at_their_own_rates():
    cost = compute_matched.StageCost
    costs = {"behavior": cost(0.0, 0.5), "critic": cost(0.0, 0.01), "align": cost(0.0, 0.2)}
    budgets = compute_matched.matched("eda", costs, seconds=600.0)
    assert set(budgets) == {"behavior_steps", "critic_steps", "align_steps"}
    # EDA's defaults are 1M / 1.5M / 200k: the same proportions, and the seconds add up to the target.
    assert budgets["critic_steps"] / budgets["behavior_steps"] == pytest.approx(1.5, rel=1e-2)
    assert budgets["behavior_steps"] / budgets["align_steps"] == pytest.approx(5.0, rel=1e-2)
    spent = sum(budgets[f"{s}_steps"] * c.step_s for s, c in costs.items())
    assert spent == pytest.approx(600.0, rel=1e-2)
    assert compute_matched.matched("dql", {"main": cost(0.0, 0.1)}, seconds=50.0) == {"steps": 500}


def test_a_fixed_set_up_is_charged_once_not_per_step():
    # A stage that takes 13 s to set up and 0.2 s a step: 35 s at 110 steps, 79 s at 330.
    costs = compute_matched.fit({"main": 35.0}, {"main": 79.0}, steps=110, long_steps=330)
    assert costs["main"].fixed_s == pytest.approx(13.0) and costs["main"].step_s == pytest.approx(0.2)
    # 50 s of training: 13 s of set-up leave 37 s, 185 steps (a per-step rate of 35/110 s would give 157).
    assert compute_matched.matched("dql", costs, seconds=50.0) == {"steps": 185}


def test_a_calibration_that_cannot_be_fitted_or_a_set_up_beyond_the_budget_is_an_error():
    with pytest.raises(OffdiffError, match="stage 'main' took 9.00 s for 300 steps and 10.00 s for 100: too noisy"):
        compute_matched.fit({"main": 10.0}, {"main": 9.0}, steps=100, long_steps=300)
    with pytest.raises(OffdiffError, match="fixed set-up alone takes 60.0 s, not less than --seconds 50"):
        compute_matched.matched("dql", {"main": compute_matched.StageCost(60.0, 0.1)}, seconds=50.0)


def test_a_stage_without_a_budget_key_is_an_error():
    assert compute_matched.stage_keys("dtql", ["pretrain", "main"]) == {"pretrain": "pretrain_steps", "main": "steps"}
    with pytest.raises(OffdiffError, match="no budget key for stage 'bogus'"):
        compute_matched.stage_keys("eda", ["bogus"])


def test_writes_a_grid_from_a_template_with_measured_rates(tmp_path, capsys):
    template = tmp_path / "t.yaml"
    template.write_text(yaml.safe_dump({
        "name": "tiny", "datasets": ["toy:four_corners"], "seeds": [0],
        "algorithms": [{"name": "d", "algo": "dtql", "overrides": {"diffusion_hidden": 16, "policy_hidden": 16,
                                                                   "critic_hidden": 16, "batch_size": 32,
                                                                   "eval_candidates": 4}}],
        "budget": {"steps": 2000}, "protocol": {"eval_every": 1000}}))
    out = tmp_path / "matched.yaml"
    compute_matched.main([str(template), "--seconds", "30", "--calibrate", "10", "--protocol", "eval_every=1000000",
                          "--protocol", "eval_episodes=5", "--alongside", "2", "--out", str(out)])
    grid = yaml.safe_load(out.read_text())
    assert grid["name"] == "tiny-compute-matched" and "budget" not in grid
    assert grid["protocol"] == {"eval_every": 1000000, "eval_episodes": 5}
    header = out.read_text().splitlines()
    assert "1 thread, 2 side by side" in header[2]
    assert "--protocol eval_every=1000000 --protocol eval_episodes=5 --alongside 2 --out" in header[3]
    overrides = grid["algorithms"][0]["overrides"]
    assert overrides["diffusion_hidden"] == 16
    assert overrides["steps"] / overrides["pretrain_steps"] == pytest.approx(20.0, rel=0.05)  # 1M / 50k
    err = capsys.readouterr().err
    assert "d: pretrain " in err and " ms/step" in err


def test_a_protocol_setting_without_a_value_is_an_error(tmp_path):
    template = tmp_path / "t.yaml"
    template.write_text(yaml.safe_dump({"name": "tiny", "datasets": ["toy:four_corners"], "seeds": [0],
                                        "algorithms": ["dql"]}))
    with pytest.raises(OffdiffError, match="--protocol takes KEY=VALUE, got 'eval_every'"):
        compute_matched.main([str(template), "--seconds", "30", "--protocol", "eval_every", "--out",
                              str(tmp_path / "m.yaml")])
    assert not (tmp_path / "m.yaml").exists()


def test_a_failed_calibration_run_or_a_count_below_one_is_one_line(tmp_path):
    template = tmp_path / "t.yaml"
    template.write_text(yaml.safe_dump({"name": "tiny", "datasets": ["toy:no_such_toy"], "seeds": [0],
                                        "algorithms": ["dql"]}))
    with pytest.raises(OffdiffError, match="a calibration run of dql failed"):
        compute_matched.main([str(template), "--seconds", "30", "--calibrate", "5", "--alongside", "2", "--out",
                              str(tmp_path / "m.yaml")])
    with pytest.raises(OffdiffError, match="--alongside takes a count of runs of at least 1, got 0"):
        compute_matched.main([str(template), "--seconds", "30", "--alongside", "0", "--out", str(tmp_path / "m.yaml")])
    assert not (tmp_path / "m.yaml").exists()
