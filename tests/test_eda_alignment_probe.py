"""benchmarks/eda_alignment_probe.py: EDA's alignment restarted from a run's behaviour model and critic."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from offdiff.cli import main
from offdiff_dql import DiffusionQL
from offdiff_eda import EDA

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("eda_alignment_probe", ROOT / "benchmarks" / "eda_alignment_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

TINY = {**EDA.smoke_config, "label_fraction": 0.5}


def _train(tmp_path: Path, source: str, algo: str = "eda", settings: dict | None = None) -> Path:
    sets = [arg for key, value in (settings or {}).items() for arg in ("--set", f"{key}={value}")]
    assert main(["train", "--algo", algo, "--dataset", source, "--runs-dir", str(tmp_path), "--steps", "3",
                 "--task", "none", "--ref-scores", "0,1000", "--eval-episodes", "2", "--eval-envs", "2",
                 "--device", "cpu", "--quiet", *sets]) == 0
    return next(tmp_path.glob(f"train/{algo}/**/seed_0"))


def _rows(table: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split(" | ") for line in table.strip().splitlines()[2:]]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_restarts_alignment_from_the_runs_behaviour_and_reports_its_samples(tmp_path, tiny_hopper_minari, capsys):
    run = _train(tmp_path, tiny_hopper_minari, settings=TINY)
    capsys.readouterr()
    out = tmp_path / "probe.md"
    assert probe.main([str(run), "--steps", "1,2", "--perturb", "0,0.05", "--states", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    rows = _rows(printed)
    assert list(rows) == ["θ₀ = φ (behaviour)", "aligned, 1 steps", "aligned, 2 steps", "φ ± 0 at random",
                          "φ ± 0.05 at random"]
    # θ₀ is the run's behaviour model: a zero perturbation samples exactly the same actions.
    assert rows["φ ± 0 at random"] == rows["θ₀ = φ (behaviour)"]
    assert rows["φ ± 0.05 at random"] != rows["θ₀ = φ (behaviour)"]
    assert all(float(rows[f"aligned, {k} steps"][0]) > 0 for k in (1, 2))  # the align loss, a cross-entropy
    assert rows["aligned, 2 steps"][1:] != rows["θ₀ = φ (behaviour)"][1:]  # the update moved π_θ


def test_alignment_keys_can_be_set_and_the_trained_stages_keys_cannot(tmp_path, tiny_hopper_minari, capsys):
    run = _train(tmp_path, tiny_hopper_minari, settings=TINY)
    capsys.readouterr()
    args = [str(run), "--steps", "1", "--perturb", "", "--states", "8"]
    assert probe.main([*args, "--set", "q_scale=0.5"]) == 0
    softer = _rows(capsys.readouterr().out)["aligned, 1 steps"]
    assert probe.main(args) == 0
    assert _rows(capsys.readouterr().out)["aligned, 1 steps"] != softer  # other labels, another step
    assert probe.main([*args, "--set", "hidden=64"]) == 2
    assert capsys.readouterr().err.strip() == ("offdiff: error: --set hidden: the behaviour model and critic come from "
                                               "the run as trained; set only keys of the alignment (e.g. q_scale, "
                                               "beta, align_lr)")
    with pytest.raises(SystemExit):
        probe.main([*args, "--states", "0"])
    assert "argument --states: expected numbers >= 1, got '0'" in capsys.readouterr().err


def test_another_algorithms_run_is_one_line_error(tmp_path, tiny_hopper_minari, capsys):
    run = _train(tmp_path, tiny_hopper_minari, algo="dql", settings=DiffusionQL.smoke_config)
    capsys.readouterr()
    assert probe.main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"offdiff: error: {run} is a dql run; the probe restarts EDA's alignment"
