"""DTQL: conformance with KL distillation, presets, the pieces of one step, learning on a toy bandit, the CLI end to
end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from offdiff.algorithm import EnvSpec
from offdiff.cli import main
from offdiff.config import apply_overrides
from offdiff.data.buffer import Batch, DeviceBuffer
from offdiff.data.toy import TOY_TASKS
from offdiff.errors import OffdiffError
from offdiff.io import read_jsonl
from offdiff.testing import check_algorithm, random_transitions
from offdiff.train.runner import TrainRequest, plan, train
from offdiff_dtql import DTQL
from offdiff_dtql.presets import PRESETS

TINY = DTQL.smoke_config
SPEC = EnvSpec(obs_dim=5, act_dim=3, dataset_id="test/random-v0", task="test")


def _build(**overrides) -> DTQL:
    torch.manual_seed(0)
    config = apply_overrides(DTQL.Config(), {**TINY, **overrides})
    return DTQL(config, SPEC, torch.device("cpu"), torch.Generator().manual_seed(0))


def _batch(n: int = 8) -> Batch:
    return DeviceBuffer(random_transitions(64, obs_dim=5, act_dim=3), "cpu").sample(n, torch.Generator().manual_seed(1))


def test_conformance_kl_distillation():  # trust region, at its smoke_config: tests/test_conformance.py
    check_algorithm(DTQL, overrides={**TINY, "regularizer": "kl"})


def test_presets_follow_the_papers_table():
    d4rl = [k for k in PRESETS if not k.startswith("toy-")]
    assert len(d4rl) == 20  # 9 Gym, 6 AntMaze, 2 pen, 3 kitchen
    assert PRESETS["antmaze-large-diverse"] == {
        "lr": 3e-4, "alpha": 0.5, "gamma_nll": 1.0, "lr_decay": False, "steps": 300_000, "batch_size": 2048,
        "expectile": 0.9, "reward_transform": "iql_antmaze"}
    assert PRESETS["hopper-medium"]["lr"] == 1e-4 and PRESETS["hopper-medium"]["lr_decay"]
    assert PRESETS["pen-cloned"]["lr"] == 1e-5 and PRESETS["pen-cloned"]["alpha"] == 1500
    assert all((p["gamma_nll"] == 1.0) == k.startswith("antmaze") for k, p in PRESETS.items() if k in d4rl)
    for task in PRESETS:
        config = apply_overrides(DTQL.Config(), DTQL.preset(task))
        assert config.critic_lr == 3e-4 or task.startswith("toy-")  # the release hard-codes the critic's lr
        assert config.pretrain_steps == 50_000 or task.startswith("toy-")
    toy = DTQL.preset("toy-grid25_hard")
    assert toy["sigma_data"] * TOY_TASKS["grid25_hard"].act_bound == pytest.approx(0.5)
    assert DTQL.preset("no-such-task") == {}


def test_policy_step_trains_only_the_policy():
    algo = _build()
    batch = _batch()
    before = {k: m.state_dict() for k, m in algo.modules().items()}
    before = {k: {n: t.clone() for n, t in s.items()} for k, s in before.items()}
    metrics = algo._policy_step(batch)
    after = {k: m.state_dict() for k, m in algo.modules().items()}
    assert all(torch.equal(before["diffusion"][n], t) for n, t in after["diffusion"].items())
    assert all(torch.equal(before["critic"][n], t) for n, t in after["critic"].items())
    assert any(not torch.equal(before["actor"][n], t) for n, t in after["actor"].items())
    assert all(p.grad is None for p in [*algo.diffusion.parameters(), *algo.critic.parameters()])
    assert all(p.requires_grad for p in [*algo.diffusion.parameters(), *algo.critic.parameters_to_train()])
    assert {"tr_loss", "q_policy", "nll", "policy_loss"} <= set(metrics)


def test_kl_surrogate_gradient_is_the_normalised_score_difference():
    algo = _build(regularizer="kl")
    algo.actor.init_from(algo.diffusion)
    torch.nn.init.normal_(algo.actor.fake.net.net[-1].weight)  # make the fake score differ from the real one
    obs = torch.randn(6, 5)
    actions = torch.randn(6, 3, requires_grad=True)
    loss = algo.actor.kl_loss(actions, obs, algo.diffusion, torch.Generator().manual_seed(3))
    loss.backward()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # g by hand, with the same draws (σ first, then ε)
        sigma = algo.diffusion.schedule.sample_sigma(6, generator, torch.device("cpu"))
        noisy = actions + sigma * torch.randn(6, 3, generator=generator)
        d_real, d_fake = algo.diffusion(noisy, sigma, obs), algo.actor.fake(noisy, sigma, obs)
        g = (d_fake - d_real) / (actions - d_real).abs().mean(dim=1, keepdim=True)
    torch.testing.assert_close(actions.grad, g / actions.numel())


def test_kl_init_copies_the_pretrained_score_network():
    algo = _build(regularizer="kl")
    algo.actor.init_from(algo.diffusion)
    real = algo.diffusion.net.state_dict()
    for net in (algo.actor.generator, algo.actor.fake.net):
        assert all(torch.equal(real[n], t) for n, t in net.state_dict().items())


def test_cosine_decay_runs_per_step_over_the_main_phase_only():
    algo = _build(lr_decay=True, steps=10, lr=1e-3)
    for step in range(3):
        algo.update("pretrain", _batch(), step)
    assert {g["lr"] for o in algo.optimizers().values() for g in o.param_groups} == {1e-3, 3e-4}
    for step in range(4):
        algo.update("main", _batch(), step)
    factor = 0.5 * (1 + math.cos(math.pi * 4 / 10))
    assert algo.opts["policy"].param_groups[0]["lr"] == pytest.approx(1e-3 * factor)
    assert algo.opts["critic"].param_groups[0]["lr"] == pytest.approx(3e-4 * factor)


def test_bad_config_is_a_clear_error():
    with pytest.raises(OffdiffError, match="gamma_nll=0"):
        _build(regularizer="kl", gamma_nll=1.0)


# -- learning on the 25-Gaussian 'hard' bandit ---------------------------------------------------------------

TOY = "grid25_hard"
# The toy preset, made cheaper: smaller networks and batch, fewer steps, a larger lr (so the policy travels faster).
QUICK_TOY = {"batch_size": 256, "diffusion_hidden": 64, "policy_hidden": 32, "critic_hidden": 32, "lr": 1e-2,
             "steps": 500}


def _trained(request: TrainRequest) -> tuple[DTQL, dict]:
    summary = train(request, progress=False)
    planned = plan(request)
    spec = EnvSpec(obs_dim=2, act_dim=2, dataset_id=f"toy/{TOY}", task=f"toy-{TOY}")
    algo = DTQL(planned.config, spec, torch.device("cpu"), torch.Generator().manual_seed(0))
    algo.load_state_dict(torch.load(planned.run_dir.checkpoint, weights_only=False)["algorithm"])
    return algo, summary


def _fractions(actions: torch.Tensor) -> tuple[float, float]:
    """(fraction in the best mode, fraction inside the data's support) of actions in [-1, 1]."""
    task = TOY_TASKS[TOY]
    modes = task.mode_index(actions.numpy() * task.act_bound)
    return float(np.isin(modes, task.best_modes).mean()), float((modes >= 0).mean())


@pytest.mark.slow
def test_trust_region_keeps_the_policy_in_the_best_data_mode(tmp_path):
    common = dict(algo="dtql", source=f"toy:{TOY}", seed=0, device="cpu", runs_root=tmp_path)
    dtql, summary = _trained(TrainRequest(**common, overrides=QUICK_TOY))
    free, free_summary = _trained(TrainRequest(**common, overrides={**QUICK_TOY, "alpha": 0.0}))
    reused = [p for p in tmp_path.glob("**/metrics.jsonl") if "reused_cached_stage" in p.read_text()]
    assert len(reused) == 1, "the α = 0 run reuses the cached pretraining of the first"
    obs, gen = torch.zeros(1000, 2), torch.Generator().manual_seed(1)
    with torch.no_grad():
        policy_best, policy_in = _fractions(dtql.actor(obs).rsample(gen))
        act_best, _ = _fractions(dtql.act(obs, gen))
        free_best, free_in = _fractions(free.actor(obs).rsample(gen))
    print(f"DTQL (α=2): policy samples in the best mode {policy_best:.3f}, in support {policy_in:.3f}; "
          f"act() in the best mode {act_best:.3f}; normalized score {summary['final_normalized_score']:.1f}. "
          f"α=0: in the best mode {free_best:.3f}, in support {free_in:.3f}, "
          f"normalized score {free_summary['final_normalized_score']:.1f}")
    assert policy_best >= 0.9 and act_best >= 0.9
    assert free_in <= 0.5  # without the trust region, Q drives the actions out of the data's support


# -- the command line, end to end on a tiny Minari dataset ---------------------------------------------------

def test_cli_train_on_tiny_minari_dataset(tmp_path, capsys, tiny_hopper_minari):
    code = main(["train", "--algo", "dtql", "--dataset", tiny_hopper_minari, "--runs-dir", str(tmp_path),
                 "--task", "hopper-medium", "--ref-scores", "d4rl",
                 "--steps", "20", "--eval-episodes", "2", "--eval-envs", "2", "--device", "cpu", "--quiet",
                 *(f"--set={k}={v}" for k, v in {**TINY, "batch_size": 32, "eval_candidates": 16}.items())])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "normalized score (last evaluation, 2 episodes)" in out
    (evals_path,) = tmp_path.glob("**/evals.jsonl")
    (row,) = read_jsonl(evals_path)
    assert row["stage"] == "main" and row["step"] == 20 and len(row["returns"]) == 2
    ref_min, ref_max = -20.272305, 3234.3  # D4RL's hopper reference scores
    assert row["normalized"] == pytest.approx([100 * (r - ref_min) / (ref_max - ref_min) for r in row["returns"]])
