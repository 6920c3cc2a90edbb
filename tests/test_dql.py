"""Diffusion-QL: the conformance suite with max-Q backup, the released LR schedule, and learning on the four-corner
bandit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from offdiff.algorithm import EnvSpec
from offdiff.data.buffer import DeviceBuffer
from offdiff.data.toy import TOY_TASKS
from offdiff.errors import OffdiffError
from offdiff.testing import check_algorithm, random_transitions
from offdiff.train.runner import TrainRequest, plan, train
from offdiff_dql import DiffusionQL
from offdiff_dql.dql import released_schedule


def test_conformance_with_max_q_backup():  # at its smoke_config: tests/test_conformance.py
    check_algorithm(DiffusionQL, overrides={**DiffusionQL.smoke_config, "max_q_backup": True, "max_q_samples": 3})


def test_conformance_with_dpm_solver():
    check_algorithm(DiffusionQL, overrides={"hidden": 32, "batch_size": 16, "eval_candidates": 4,
                                            "sampler": "dpm_solver", "solver_nfe": 3})


def test_the_sampler_is_a_config_choice():
    """`sampler` picks the policy's sampler: ancestral runs the ε-network N = 5 times, DPM-Solver nfe + 1 times."""
    spec = EnvSpec(obs_dim=3, act_dim=2, dataset_id="test/x-v0", task="test")
    built = {s: DiffusionQL(DiffusionQL.Config(hidden=16, sampler=s), spec, torch.device("cpu"),
                            torch.Generator().manual_seed(0)) for s in ("ancestral", "dpm_solver")}
    calls = {}
    for sampler, algo in built.items():
        counted = []
        algo.actor.net.register_forward_hook(lambda *args, seen=counted: seen.append(1))
        obs = torch.randn(4, 3)
        first = algo._sample(algo.actor, obs, torch.Generator().manual_seed(1))
        calls[sampler] = len(counted)
        assert first.shape == (4, 2) and first.abs().max() <= 1
    assert calls == {"ancestral": 5, "dpm_solver": 4 + 1}
    with pytest.raises(OffdiffError, match="n_timesteps >= 2"):
        DiffusionQL(DiffusionQL.Config(n_timesteps=1, sampler="dpm_solver"), spec, torch.device("cpu"),
                    torch.Generator().manual_seed(0))


def test_released_schedule_barely_decays_and_the_fix_does():
    released = released_schedule(2_000_000)
    assert released(0) == 1.0 and released(49_999) == 1.0
    assert released(50_000) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2000)))
    assert released(1_999_999) == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 2000)))
    assert released(1_999_999) > 0.99
    assert DiffusionQL.preset("hopper-medium")["steps"] == 2_000_000
    assert DiffusionQL.preset("antmaze-large-play") == {
        "lr": 3e-4, "eta": 4.5, "max_q_backup": True, "reward_transform": "cql_antmaze",
        "steps": 1_000_000, "grad_norm": 10.0}


def _trained(request: TrainRequest) -> DiffusionQL:
    train(request, progress=False)
    planned = plan(request)
    spec = EnvSpec(obs_dim=2, act_dim=2, dataset_id="toy/four_corners", task="toy-four_corners")
    algo = DiffusionQL(planned.config, spec, torch.device("cpu"), torch.Generator().manual_seed(0))
    algo.load_state_dict(torch.load(planned.run_dir.checkpoint, weights_only=False)["algorithm"])
    return algo


def _best_corner_fraction(actions: torch.Tensor) -> float:
    """Fraction of actions nearest to the best (lower-right, r = 5) corner of the four."""
    task = TOY_TASKS["four_corners"]
    points = actions.numpy() * task.act_bound
    nearest = np.linalg.norm(points[:, None, :] - np.asarray(task.means)[None], axis=-1).argmin(axis=1)
    return float(np.isin(nearest, task.best_modes).mean())


@pytest.mark.slow
def test_learns_the_best_corner_where_behavior_cloning_does_not(tmp_path):
    common = dict(algo="dql", source="toy:four_corners", seed=0, steps=1500, device="cpu",
                  protocol={"eval_episodes": 100, "eval_envs": 100}, runs_root=tmp_path)
    small = {"hidden": 64, "lr": 1e-3, "critic_lr": 1e-3}
    dql = _trained(TrainRequest(**common, overrides=small))
    bc = _trained(TrainRequest(**common, overrides={**small, "eta": 0.0}))
    obs, gen = torch.zeros(1000, 2), torch.Generator().manual_seed(1)
    with torch.no_grad():
        evaluation = _best_corner_fraction(dql.act(obs, generator=gen))
        policy = _best_corner_fraction(dql.actor.sample(obs, gen))
        cloned = _best_corner_fraction(bc.actor.sample(obs, gen))
    print(f"best-corner fraction: DQL evaluation {evaluation:.3f}, DQL policy samples {policy:.3f}, "
          f"behavior cloning samples {cloned:.3f}")
    assert evaluation >= 0.8
    assert policy >= 0.8  # the diffusion policy itself moved, not only the Q-based selection
    assert cloned < 0.5  # BC covers the four equally likely corners (about 0.25 each)


@pytest.mark.parametrize("warmup", ["release", "copy"])
def test_ema_warmup_before_ema_start(warmup: str):
    """The release leaves the EMA actor at its initial weights until step 1000; `copy` tracks the actor."""
    spec = EnvSpec(obs_dim=3, act_dim=2, dataset_id="test/x-v0", task="test")
    config = DiffusionQL.Config(hidden=16, batch_size=8, ema_start=10, ema_every=5, ema_warmup=warmup)
    algo = DiffusionQL(config, spec, torch.device("cpu"), torch.Generator().manual_seed(0))
    initial = [p.clone() for p in algo.ema_actor.parameters()]
    buffer = DeviceBuffer(random_transitions(64, obs_dim=3, act_dim=2), "cpu")
    gen = torch.Generator().manual_seed(1)
    for step in range(7):  # steps 0 and 5 are EMA steps, both before ema_start; step 6 trains the actor on
        algo.update("main", buffer.sample(8, gen), step)
    same_as_initial = all(torch.equal(a, b) for a, b in zip(algo.ema_actor.parameters(), initial, strict=True))
    same_as_actor = all(torch.equal(a, b) for a, b in
                        zip(algo.ema_actor.parameters(), algo.actor.parameters(), strict=True))
    assert same_as_initial == (warmup == "release")
    assert (warmup == "copy") == (not same_as_initial) and not same_as_actor  # copied at step 5, trained since
