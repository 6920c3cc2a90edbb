"""Finding hyperparameters without reading source: `offdiff algos NAME [--dataset]` and `offdiff train --dry-run`;
and every config field of every registered plugin is documented and range-checked."""

from __future__ import annotations

import dataclasses
import re

import pytest

from offdiff.algorithm import AlgorithmConfig
from offdiff.cli import main
from offdiff.config import apply_overrides, field_doc
from offdiff.errors import OffdiffError
from offdiff.registry import get_algorithm, plugins
from offdiff.train.protocol import Protocol
from offdiff.train.runner import TrainRequest, plan


def _run(capsys, *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _row(out: str, key: str) -> list[str]:
    """The table row of `key`, split on runs of two or more spaces."""
    (line,) = [line for line in out.splitlines() if line.split(" ", 1)[0] == key]
    return re.split(r"\s{2,}", line.strip())


@pytest.mark.parametrize("name", sorted(plugins()))
def test_every_config_field_is_documented_and_its_default_accepted(name):
    cls = get_algorithm(name)
    for config_cls in (cls.Config, AlgorithmConfig, Protocol):
        undocumented = [f.name for f in dataclasses.fields(config_cls) if not field_doc(f)]
        assert not undocumented, f"{config_cls.__name__}: fields without a doc: {undocumented}"
    config = cls.Config()  # the defaults pass their own checks (a config checks itself when made)
    for task in ("hopper-medium", "antmaze-large-play", "toy-four_corners", "toy-gaussians8", "toy-grid25_hard"):
        apply_overrides(config, cls.preset(task), origin=f"{name} preset for {task}")


def test_a_config_rejects_out_of_range_values_however_it_is_made():
    cls = get_algorithm("dql")
    for bad in ({"hidden": 0}, {"lr": -1.0}, {"eta": float("nan")}, {"tau": 1.5}, {"lr_schedule": "linear"}):
        with pytest.raises(OffdiffError):
            cls.Config(**bad)
    with pytest.raises(OffdiffError, match="eval_episodes=0 must be >= 1"):
        Protocol(eval_episodes=0)


def test_algos_name_prints_every_key_with_type_default_range_and_doc(capsys):
    out = _run(capsys, "algos", "dql")
    cls = get_algorithm("dql")
    for f in dataclasses.fields(cls.Config):
        assert field_doc(f) in out, f.name
    assert _row(out, "eta")[:4] == ["eta", "float", "1.0", ">= 0"]
    assert _row(out, "steps")[:4] == ["steps", "int", "2000000", ">= 1"] and "--steps sets it" in out
    assert _row(out, "lr_schedule")[:3] == ["lr_schedule", "released|cosine|constant", "released"]
    assert _row(out, "eval_episodes")[:4] == ["eval_episodes", "int", "10", ">= 1"], "the protocol too"


def test_algos_name_with_a_dataset_prints_the_preset_and_the_resolved_config(capsys):
    out = _run(capsys, "algos", "eda", "--dataset", "toy:gaussians8")
    preset = get_algorithm("eda").preset("toy-gaussians8")
    assert "task toy-gaussians8" in out and all(f"{k}={v}" in out for k, v in preset.items())
    # key, type, default, preset, resolved, ...
    assert _row(out, "behavior_lr")[:5] == ["behavior_lr", "float", "0.0003", "0.0001", "0.0001"]
    assert _row(out, "beta")[:4] == ["beta", "float", "1.0", "1.0"], "no preset value: the resolved one"
    assert _row(out, "eval_episodes")[:4] == ["eval_episodes", "int", "10", "100"], "the toy protocol"


def test_algos_with_an_unknown_name_or_dataset_is_one_line(capsys):
    for argv in (["algos", "nope"], ["algos", "dql", "--dataset", "toy:nowhere"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("offdiff: error:") and err.count("\n") == 1


def test_train_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    argv = ["train", "--algo", "dtql", "--dataset", "toy:grid25_hard", "--steps", "100", "--set", "alpha=0.5",
            "--eval-every", "50", "--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    out = _run(capsys, *argv)
    planned = plan(TrainRequest(algo="dtql", source="toy:grid25_hard", steps=100, overrides={"alpha": "0.5"},
                                protocol={"eval_every": 50}, runs_root=tmp_path / "runs"))
    assert f"run folder: {planned.run_dir.path} (new)" in out
    assert "alpha = 0.5   [--set]" in out and "pretrain_steps = 100   [--steps]" in out
    assert "lr = 0.003   [preset]" in out and "discount = 0.99\n" in out
    assert "eval_every=50" in out and "eval_episodes=100" in out
    assert "pretrain: 100 steps x batch 10000, not evaluated, cacheable" in out
    assert "main: 100 steps x batch 10000, evaluated" in out
    assert not (tmp_path / "runs").exists()


def test_train_dry_run_checks_values_like_a_run(tmp_path, capsys):
    assert main(["train", "--algo", "dql", "--dataset", "toy:four_corners", "--set", "hidden=0", "--dry-run",
                 "--runs-dir", str(tmp_path)]) == 2
    assert "hidden=0 must be >= 1" in capsys.readouterr().err
