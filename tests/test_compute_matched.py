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
    rates = {"behavior": 0.5, "critic": 0.01, "align": 0.2}
    budgets = compute_matched.matched("eda", rates, seconds=600.0)
    assert set(budgets) == {"behavior_steps", "critic_steps", "align_steps"}
    # EDA's defaults are 1M / 1.5M / 200k: the same proportions, and the seconds add up to the target.
    assert budgets["critic_steps"] / budgets["behavior_steps"] == pytest.approx(1.5, rel=1e-2)
    assert budgets["behavior_steps"] / budgets["align_steps"] == pytest.approx(5.0, rel=1e-2)
    spent = sum(budgets[f"{s}_steps"] * r for s, r in rates.items())
    assert spent == pytest.approx(600.0, rel=1e-2)
    assert compute_matched.matched("dql", {"main": 0.1}, seconds=50.0) == {"steps": 500}


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
                          "--protocol", "eval_episodes=5", "--out", str(out)])
    grid = yaml.safe_load(out.read_text())
    assert grid["name"] == "tiny-compute-matched" and "budget" not in grid
    assert grid["protocol"] == {"eval_every": 1000000, "eval_episodes": 5}
    assert "--protocol eval_every=1000000 --protocol eval_episodes=5 --out" in out.read_text().splitlines()[2]
    overrides = grid["algorithms"][0]["overrides"]
    assert overrides["diffusion_hidden"] == 16
    assert overrides["steps"] / overrides["pretrain_steps"] == pytest.approx(20.0, rel=0.05)  # 1M / 50k
    assert "d: seconds/step pretrain" in capsys.readouterr().err


def test_a_protocol_setting_without_a_value_is_an_error(tmp_path):
    template = tmp_path / "t.yaml"
    template.write_text(yaml.safe_dump({"name": "tiny", "datasets": ["toy:four_corners"], "seeds": [0],
                                        "algorithms": ["dql"]}))
    with pytest.raises(OffdiffError, match="--protocol takes KEY=VALUE, got 'eval_every'"):
        compute_matched.main([str(template), "--seconds", "30", "--protocol", "eval_every", "--out",
                              str(tmp_path / "m.yaml")])
    assert not (tmp_path / "m.yaml").exists()
