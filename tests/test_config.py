"""Config resolution: defaults, then the task preset, then typed `--set` overrides."""

from __future__ import annotations

import pytest

from offdiff.config import apply_overrides, config_dict, hashed_config, parse_assignments, stable_hash
from offdiff.errors import OffdiffError
from offdiff.train.runner import TrainRequest, resolve_config
from offdiff_dql import DiffusionQL, DQLConfig


def test_typed_overrides():
    config = apply_overrides(DQLConfig(), parse_assignments(["eta=2", "steps=1e3", "max_q_backup=true",
                                                             "lr_schedule=cosine", "reward_transform=none"]))
    assert config.eta == 2.0 and isinstance(config.eta, float)
    assert config.steps == 1000 and isinstance(config.steps, int)
    assert config.max_q_backup is True and config.lr_schedule == "cosine"


@pytest.mark.parametrize("pair", ["steps=1.5", "max_q_backup=maybe", "eta=", "lr_schedule=exp", "nokey=1"])
def test_bad_overrides(pair):
    with pytest.raises(OffdiffError):
        apply_overrides(DQLConfig(), parse_assignments([pair]))


def test_assignment_syntax():
    with pytest.raises(OffdiffError, match="key=value"):
        parse_assignments(["eta"])


def test_preset_then_steps_then_set():
    request = TrainRequest(algo="dql", source="toy:four_corners", steps=100, overrides={"grad_norm": "3"})
    config = resolve_config(DiffusionQL, "walker2d-medium", request)
    assert (config.grad_norm, config.steps, config.lr) == (3.0, 100, 3e-4)
    assert resolve_config(DiffusionQL, "antmaze-medium-play", TrainRequest("dql", "x")).lr == 1e-3


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_a_later_field_at_its_default_stays_out_of_the_run_hash():
    """DQL's `sampler` came after runs existed: at its default the hash is the one those runs have."""
    default = DQLConfig()
    older = {k: v for k, v in config_dict(default).items() if k not in ("sampler", "solver_nfe", "solver_order")}
    assert hashed_config(default) == older
    ablation = apply_overrides(default, {"sampler": "dpm_solver"})
    assert hashed_config(ablation) == {**older, "sampler": "dpm_solver"}
    assert stable_hash(hashed_config(ablation)) != stable_hash(hashed_config(default))


def test_a_grid_cells_seeds_share_one_resolved_config(tmp_path):
    from offdiff.train.runner import plan

    def planned(seed: int, **overrides: str):
        return plan(TrainRequest(algo="dql", source="toy:four_corners", seed=seed, steps=50, overrides=overrides,
                                 runs_root=tmp_path))

    first, second = planned(0, eta="2"), planned(1, eta="2")
    assert first.config is second.config and first.protocol is second.protocol  # resolved once, shared
    assert first.run_dir.path.parent == second.run_dir.path.parent != planned(0, eta="3").run_dir.path.parent
    assert planned(0, eta="3").config.eta == 3.0 and first.config.eta == 2.0
    with pytest.raises(OffdiffError):  # a bad value is still an error on every call, never cached
        planned(0, eta="x")
    with pytest.raises(OffdiffError):
        planned(1, eta="x")
