"""DTQL's per-task hyperparameters (Chen, Wang, Zhou 2024; `main.py::offline_hyperparameters` of the release).

Columns: lr of the diffusion model and the policy, α (trust-region weight), γ_NLL (weight of the NLL term),
cosine LR decay, main-phase steps (release epochs × 1000), batch size, IQL expectile, reward transform.
The critic's lr is 3e-4 for every task; pretraining is 50k steps everywhere.
"""

from __future__ import annotations

from typing import Any

from offdiff.data.toy import TOY_TASKS

#            task                        lr     alpha   nll  decay  epochs batch  expectile reward
_TABLE = [
    ("halfcheetah-medium",         3e-4,     1.0, 0.0, False, 1000,  256, 0.7, "none"),
    ("halfcheetah-medium-replay",  3e-4,     5.0, 0.0, False, 1000,  256, 0.7, "none"),
    ("halfcheetah-medium-expert",  3e-4,    50.0, 0.0, False, 1000,  256, 0.7, "none"),
    ("hopper-medium",              1e-4,     5.0, 0.0, True,  1000,  256, 0.7, "none"),
    ("hopper-medium-replay",       3e-4,     5.0, 0.0, False, 1000,  256, 0.7, "none"),
    ("hopper-medium-expert",       3e-4,    20.0, 0.0, False, 1000,  256, 0.7, "none"),
    ("walker2d-medium",            3e-4,     5.0, 0.0, True,  1000,  256, 0.7, "none"),
    ("walker2d-medium-replay",     3e-4,     5.0, 0.0, True,  1000,  256, 0.7, "none"),
    ("walker2d-medium-expert",     3e-4,     5.0, 0.0, True,  1000,  256, 0.7, "none"),
    ("antmaze-umaze",              3e-4,     1.0, 1.0, False,  500, 2048, 0.9, "iql_antmaze"),
    ("antmaze-umaze-diverse",      3e-5,     1.0, 1.0, True,   500, 2048, 0.9, "iql_antmaze"),
    ("antmaze-medium-play",        3e-4,     1.0, 1.0, False,  400, 2048, 0.9, "iql_antmaze"),
    ("antmaze-medium-diverse",     3e-4,     1.0, 1.0, False,  400, 2048, 0.9, "iql_antmaze"),
    ("antmaze-large-play",         3e-4,     1.0, 1.0, False,  350, 2048, 0.9, "iql_antmaze"),
    ("antmaze-large-diverse",      3e-4,     0.5, 1.0, False,  300, 2048, 0.9, "iql_antmaze"),
    ("pen-human",                  3e-5,  1500.0, 0.0, True,   300,  256, 0.9, "none"),
    ("pen-cloned",                 1e-5,  1500.0, 0.0, False,  200,  256, 0.7, "none"),
    ("kitchen-complete",           1e-4,   200.0, 0.0, True,   500,  256, 0.7, "none"),
    ("kitchen-partial",            1e-4,   100.0, 0.0, True,  1000,  256, 0.7, "none"),
    ("kitchen-mixed",              3e-4,   200.0, 0.0, True,   500,  256, 0.7, "none"),
]

PRESETS: dict[str, dict[str, Any]] = {
    task: {"lr": lr, "alpha": alpha, "gamma_nll": nll, "lr_decay": decay, "steps": epochs * 1000,
           "batch_size": batch, "expectile": expectile, "reward_transform": reward}
    for task, lr, alpha, nll, decay, epochs, batch, expectile, reward in _TABLE
}


def _toy(task: str, alpha: float) -> dict[str, Any]:
    """DTQL's 2-D toy setting (`toy_tasks/toy_main.py`), in the suite's action units.

    The suite divides toy actions by the task's action bound; the σ's are divided by it too, so the EDM
    sees the same geometry as the paper's toy (modes 5 apart, σ_data 0.5 in the data's own units). Full
    batch (10k), lr 3e-3 for every network, expectile 0.95, no clamp, score net 128 wide with a 4-dim time
    embedding, and the 500 pretraining steps the toy code gives its diffusion model.
    """
    bound = TOY_TASKS[task].act_bound
    return {"pretrain_steps": 500, "steps": 3500, "batch_size": 10_000, "lr": 3e-3, "critic_lr": 3e-3,
            "expectile": 0.95, "clip_denoised": False, "diffusion_hidden": 128, "time_dim": 4,
            "sigma_data": 0.5 / bound, "sigma_min": 0.002 / bound, "sigma_max": 80.0 / bound, "alpha": alpha}


# The 25-Gaussian 'hard' bandit (reward ‖a‖, doubled in the upper-left mode). The toy code weights Q, not TR
# (loss = TR − η·Q); Adam makes α = 1/η equivalent. α = 2 is offdiff's choice: the spec does not give η here.
PRESETS["toy-grid25_hard"] = _toy("grid25_hard", alpha=2.0)
