"""DTQL (TianyuCodings/Diffusion_Trusted_Q_Learning @ 9a29cea): `agents.dtql.DTQL` and `utils.data_sampler`.

Drives the agent as the release's `main.py` does: `pretrain` steps (diffusion BC and critic), then `train`
steps; acting is the agent's `sample_action`, one state at a time, as `main.py::eval_policy` calls it.
Differences from `main.py`, all of them the harness's protocol: the main phase runs exactly the budget (the
release runs one step more), nothing is cached between runs, and evaluation is offdiff's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fidelity import twins
from fidelity.adapter import Adapter
from fidelity.draws import Draw
from fidelity.twins import Pairs
from offdiff.algorithm import Algorithm

REWARD_TUNE = {"none": "no", "normalize": "normalize", "iql_antmaze": "iql_antmaze",
               "iql_locomotion": "iql_locomotion", "cql_antmaze": "cql_antmaze"}


class DTQLAdapter(Adapter):
    release = "dtql"
    algo = "dtql"
    commit = "9a29cea"
    same_draws = True
    repository = "https://github.com/TianyuCodings/Diffusion_Trusted_Q_Learning"
    # the release's train() metrics -> offdiff's names (ql_loss is -Q of the policy's actions: negated below)
    metric_names = {"distill_loss": "tr_loss", "actor_loss": "policy_loss", "gamma_loss": "nll"}
    table = ("main.py", "offline_hyperparameters")
    table_columns = {"lr": ("lr", float), "alpha": ("alpha", float), "gamma": ("gamma_nll", float),
                     "lr_decay": ("lr_decay", bool), "num_epochs": ("steps", lambda epochs: epochs * 1000),
                     "batch_size": ("batch_size", int), "expectile": ("expectile", float)}

    @classmethod
    def release_values(cls, task: str) -> dict[str, Any]:
        return {**super().release_values(task), "critic_lr": 3e-4, "value_from_target": False, "clip_denoised": True,
                "diffusion_hidden": 256, "diffusion_layers": 4, "time_dim": 16, "policy_hidden": 256,
                "critic_hidden": 256, "regularizer": "tr"}

    def build(self) -> None:
        import gym
        from agents.dtql import DTQL
        from utils.data_sampler import Data_Sampler

        c, device = self.config, str(self.device)
        space = gym.make(self.spec.task).action_space
        self.sampler = Data_Sampler(self.data.arrays, device, REWARD_TUNE[c.reward_transform])
        self.agent = DTQL(device=device, state_dim=self.spec.obs_dim, action_dim=self.spec.act_dim,
                          action_space=space, discount=c.discount, alpha=c.alpha, lr=c.lr, lr_decay=c.lr_decay,
                          lr_maxt=c.steps, sigma_max=c.sigma_max, sigma_min=c.sigma_min, sigma_data=c.sigma_data,
                          expectile=c.expectile, tau=c.tau, gamma=c.gamma_nll, repeats=c.eval_candidates)

    def step(self, stage: str) -> dict[str, float]:
        agent, batch = self.agent, self.config.batch_size
        if stage == "pretrain":
            agent.pretrain(self.sampler, batch_size=batch, pretrain_steps=1)
            return {"bc_loss": agent.bc_loss.item()}
        metrics = {k: v[0] for k, v in agent.train(self.sampler, batch_size=batch).items()}
        metrics["q_policy"] = -metrics.pop("ql_loss")
        if self.config.gamma_nll == 0:
            del metrics["gamma_loss"]  # the release does not compute the NLL then (it logs 0)
        return self.renamed(metrics)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([self.agent.sample_action(o) for o in obs])

    def twin_tensors(self, algo: Algorithm) -> dict[str, Pairs]:
        """`ScoreNetwork` (embed, then MLPNetwork's layers) against offdiff's `ScoreMLP`; the `Critic`'s Q
        Sequentials against the heads of offdiff's vectorized double Q, its `v_model` against offdiff's V; the
        target's Q heads (the release's target V is never used); `DiagGaussianActorTanhAction.net` against
        offdiff's `TanhGaussianPolicy.net`."""
        a, critic = self.agent, algo.critic

        def q_heads(release: torch.nn.Module, ensemble: torch.nn.Module, name: str) -> Pairs:
            return [pair for head, q in enumerate((release.q1_model, release.q2_model))
                    for pair in twins.ensemble_head(q, ensemble, head, f"{name} Q{head + 1}")]

        return {"diffusion": twins.plain(a.bc_actor, algo.diffusion.net, "diffusion"),
                "critic": q_heads(a.critic, critic.q.online, "critic") + twins.plain(a.critic.v_model, critic.v.net,
                                                                                   "critic V"),
                "critic_target": q_heads(a.critic_target, critic.q.target, "critic_target"),
                "policy": twins.plain(a.distill_actor.net, algo.actor.net, "policy")}

    def step_draws(self, stage: str, draws: list[Draw]) -> list[Draw]:
        """The same order on both sides. Pretraining: rows, then the BC loss's σ (as a uniform quantile) and ε.
        Main: rows, BC loss (σ, ε), the policy's reparameterised noise, the trust-region loss (σ, ε)."""
        diffusion_loss = ["uniform", "normal"]
        policy = [] if stage == "pretrain" else ["normal", *diffusion_loss]
        return self.expect_draws(draws, ["integers", *diffusion_loss, *policy], f"{stage} step")

    def act_draws(self, draws: list[Draw]) -> list[Draw]:
        """The same order on both sides: the candidates' noise, then the choice."""
        return self.expect_draws(draws, ["normal", "choice"], "act")

    def modules(self) -> dict[str, torch.nn.Module]:
        a = self.agent
        return {"bc_actor": a.bc_actor, "critic": a.critic, "critic_target": a.critic_target,
                "distill_actor": a.distill_actor}
