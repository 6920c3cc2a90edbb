"""Diffusion-QL (Zhendong-Wang/Diffusion-Policies-for-Offline-RL @ d871f5c): `agents.ql_diffusion.Diffusion_QL`.

Drives the agent as the release's `main.py` does, one step per `train(iterations=1)` call. The release steps
its LR schedulers once per `train` call and `main.py` calls it once per 50 epochs (50k steps), with T_max =
epochs: offdiff's `lr_schedule=released`. The adapter keeps that cadence (it steps the release's own
schedulers every 50k steps); `lr_schedule=constant` is the release without `--lr_decay`; offdiff's `cosine`
(the fixed schedule) is not something the release can do. Acting is the agent's `sample_action`, one state at
a time, as `main.py::eval_policy` calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fidelity import twins
from fidelity.adapter import Adapter
from fidelity.adapters.dtql import REWARD_TUNE
from fidelity.draws import Draw
from fidelity.twins import Pairs
from offdiff.algorithm import Algorithm
from offdiff.errors import OffdiffError

EPOCH, EVAL_EPOCHS = 1000, 50  # main.py: steps per epoch; train() is called once per eval_freq = 50 epochs


class DQLAdapter(Adapter):
    release = "dql"
    algo = "dql"
    commit = "d871f5c"
    same_draws = True
    repository = "https://github.com/Zhendong-Wang/Diffusion-Policies-for-Offline-RL"
    metric_names = {"ql_loss": "q_loss"}
    table = ("main.py", "hyperparameters")
    table_columns = {"lr": ("lr", float), "eta": ("eta", float), "max_q_backup": ("max_q_backup", bool),
                     "reward_tune": ("reward_transform", lambda tune: "none" if tune == "no" else tune),
                     "num_epochs": ("steps", lambda epochs: epochs * EPOCH), "gn": ("grad_norm", float)}

    @classmethod
    def release_values(cls, task: str) -> dict[str, Any]:
        return {**super().release_values(task), "critic_lr": 3e-4, "max_q_samples": 10, "beta_min": 0.1,
                "beta_max": 10.0, "hidden": 256, "ema_decay": 0.995, "ema_every": 5, "ema_start": 1000,
                "ema_warmup": "release", "eval_candidates": 50}

    @classmethod
    def check_config(cls, config: Any, task: str) -> None:
        super().check_config(config, task)
        if config.lr_schedule == "cosine":
            raise OffdiffError("the dql release has no lr_schedule=cosine (offdiff's fixed schedule); use "
                               "released (its --lr_decay) or constant")

    def build(self) -> None:
        from agents.ql_diffusion import Diffusion_QL
        from utils.data_sampler import Data_Sampler

        c, device = self.config, str(self.device)
        self.decay = c.lr_schedule == "released"
        self.sampler = Data_Sampler(self.data.arrays, device, REWARD_TUNE[c.reward_transform])
        self.agent = Diffusion_QL(
            state_dim=self.spec.obs_dim, action_dim=self.spec.act_dim, max_action=1.0, device=device,
            discount=c.discount, tau=c.tau, max_q_backup=c.max_q_backup, eta=c.eta, beta_schedule="vp",
            n_timesteps=c.n_timesteps, lr=c.lr, lr_decay=self.decay, lr_maxt=max(c.steps // EPOCH, 1),
            grad_norm=c.grad_norm)
        self.agent.lr_decay = False  # train() must not step the schedulers after each call: step() does, as main.py
        self.done = 0

    def step(self, stage: str) -> dict[str, float]:
        metrics = self.agent.train(self.sampler, iterations=1, batch_size=self.config.batch_size)
        self.done += 1
        if self.decay and self.done % (EPOCH * EVAL_EPOCHS) == 0:
            self.agent.actor_lr_scheduler.step()
            self.agent.critic_lr_scheduler.step()
        return self.renamed({k: v[0] for k, v in metrics.items()})

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([self.agent.sample_action(o) for o in obs])

    def twin_tensors(self, algo: Algorithm) -> dict[str, Pairs]:
        """The release's `MLP` (time_mlp, mid_layer, final_layer) against offdiff's `NoisePredictionMLP`, and its
        `Critic`'s two Sequentials against the heads of offdiff's vectorized critic."""
        a = self.agent

        def critic(release: torch.nn.Module, mine: torch.nn.Module, name: str) -> Pairs:
            return [pair for head, q in enumerate((release.q1_model, release.q2_model))
                    for pair in twins.ensemble_head(q, mine, head, f"{name} Q{head + 1}")]

        return {"actor": twins.plain(a.actor.model, algo.actor.net, "actor"),
                "ema_actor": twins.plain(a.ema_model.model, algo.ema_actor.net, "ema_actor"),
                "critic": critic(a.critic, algo.critic.online, "critic"),
                "critic_target": critic(a.critic_target, algo.critic.target, "critic_target")}

    def _chain(self, draws: list[Draw]) -> list[Draw]:
        """offdiff's N normals of one ancestral chain (x_N, then the noise of steps N−1 … 1), plus the noise the
        release draws at step 0 and multiplies by 0."""
        return [*draws, Draw("normal", torch.zeros_like(draws[-1].value))]

    def step_draws(self, stage: str, draws: list[Draw]) -> list[Draw]:
        """offdiff: rows, target chain, t, ε, actor chain, coin u (head 0 if u < ½). The release: rows, target
        chain (+ step-0 noise), t, ε, actor chain (+ step-0 noise), then numpy's coin v (head 1 if v > ½): v = 1 − u."""
        n = self.config.n_timesteps
        kinds = ["integers", *["normal"] * n, "integers", "normal", *["normal"] * n, "uniform"]
        rows, *target, t, noise = self.expect_draws(draws, kinds, "step")[:n + 3]
        *actor, coin = draws[n + 3:]
        return [rows, *self._chain(target), t, noise, *self._chain(actor), Draw("np_uniform", 1.0 - coin.value)]

    def act_draws(self, draws: list[Draw]) -> list[Draw]:
        """offdiff: the candidates' chain, then the choice. The release: the chain (+ step-0 noise), the choice."""
        n = self.config.n_timesteps
        *chain, choice = self.expect_draws(draws, [*["normal"] * n, "choice"], "act")
        return [*self._chain(chain), choice]

    def modules(self) -> dict[str, torch.nn.Module]:
        a = self.agent
        return {"actor": a.actor, "ema_actor": a.ema_model, "critic": a.critic, "critic_target": a.critic_target}
