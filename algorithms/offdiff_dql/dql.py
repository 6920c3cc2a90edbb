"""Diffusion-QL (Wang, Hunt, Zhou, ICLR 2023): a diffusion policy trained by BC plus Q-learning.

The policy π_θ is a 5-step VP diffusion model over actions (ε-prediction). Each step:

  critic:  y = r + γ·(1 − d)·min_j Q'_j(s', a'),  a' ~ π_EMA(·|s')   (max over 10 a' per head on AntMaze)
           L_Q = Σ_j ‖Q_j(s, a) − y‖²
  actor:   L_π = L_d(θ) − η / E|Q_k(s, a_θ)| · E[Q_j(s, a_θ)],   a_θ ~ π_θ(·|s) through the whole chain
           L_d(θ) = E ‖ε − ε_θ(√ᾱ_t a + √(1−ᾱ_t) ε, s, t)‖²,  j ~ coin flip, k the other head

Targets: Polyak critic copy (τ = 0.005) and an EMA actor (0.995, every 5 steps from step 1000).
Acting: 50 samples per state, one drawn from softmax(min_j Q'_j).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch

from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec, Metrics, Stage
from offdiff.config import budget
from offdiff.critics import DoubleQ, td_target
from offdiff.data.buffer import Batch
from offdiff.diffusion import DiscreteVPSchedule, NoisePredictionMLP
from offdiff.nets import frozen_copy, hard_update_, polyak_update_, softmax_choice
from offdiff.optim import cosine_decay, optimizer_step
from offdiff_dql.presets import PRESETS


@dataclasses.dataclass(frozen=True)
class DQLConfig(AlgorithmConfig):
    """Defaults are the release's `main.py` defaults (halfcheetah-medium); presets set the rest per task."""

    steps: int = budget(2_000_000)
    batch_size: int = 256
    lr: float = 3e-4
    critic_lr: float = 3e-4
    eta: float = 1.0
    grad_norm: float = 9.0
    discount: float = 0.99
    tau: float = 0.005
    max_q_backup: bool = False
    max_q_samples: int = 10
    n_timesteps: int = 5
    beta_min: float = 0.1
    beta_max: float = 10.0
    hidden: int = 256
    ema_decay: float = 0.995
    ema_every: int = 5
    ema_start: int = 1000
    lr_schedule: Literal["released", "cosine", "constant"] = "released"
    eval_candidates: int = 50


def released_schedule(total_steps: int, epoch: int = 1000, every_epochs: int = 50) -> Any:
    """The release's LR decay: CosineAnnealingLR(T_max = epochs) stepped once per 50 epochs, so it barely
    decays (factor 0.999 at the end of 2M steps). Kept as the default because the published numbers used it."""
    t_max = max(total_steps // epoch, 1)
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * (step // (epoch * every_epochs)) / t_max))


class DiffusionQL(Algorithm):
    name = "dql"
    display_name = "Diffusion-QL"
    Config = DQLConfig

    def __init__(self, config: DQLConfig, spec: EnvSpec, device: torch.device, generator: torch.Generator):
        super().__init__(config, spec, device, generator)
        c = config
        self.diffusion = DiscreteVPSchedule(c.n_timesteps, c.beta_min, c.beta_max).to(self.device)
        self.actor = NoisePredictionMLP(spec.obs_dim, spec.act_dim, hidden=c.hidden).to(self.device)
        self.ema_actor = frozen_copy(self.actor)
        self.critic = DoubleQ(spec.obs_dim, spec.act_dim, hidden=(c.hidden,) * 3).to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.lr)
        self.critic_opt = torch.optim.Adam(self.critic.online.parameters(), lr=c.critic_lr)
        decay = {"released": released_schedule(c.steps), "cosine": cosine_decay(c.steps),
                 "constant": lambda step: 1.0}[c.lr_schedule]
        self.actor_sched = torch.optim.lr_scheduler.LambdaLR(self.actor_opt, decay)
        self.critic_sched = torch.optim.lr_scheduler.LambdaLR(self.critic_opt, decay)

    @classmethod
    def preset(cls, task: str) -> dict[str, Any]:
        return dict(PRESETS.get(task, {}))

    def stages(self) -> list[Stage]:
        return [Stage("main", self.config.steps, self.config.batch_size)]

    def modules(self) -> Mapping[str, torch.nn.Module]:
        return {"actor": self.actor, "ema_actor": self.ema_actor, "critic": self.critic}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def schedulers(self) -> Mapping[str, Any]:
        return {"actor": self.actor_sched, "critic": self.critic_sched}

    def _sample(self, actor: torch.nn.Module, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.diffusion.sample(actor, obs, self.spec.act_dim, generator, clip=1.0)

    @torch.no_grad()
    def _target(self, batch: Batch) -> torch.Tensor:
        """y = r + γ(1−d)·min_j Q'_j(s', a'), a' from the EMA actor; max over samples per head on AntMaze."""
        c, next_obs = self.config, batch.next_obs
        if c.max_q_backup:
            repeated = next_obs.repeat_interleave(c.max_q_samples, dim=0)
            next_q = self.critic.target_q(repeated, self._sample(self.ema_actor, repeated, self.generator))
            next_q = next_q.view(next_q.shape[0], -1, c.max_q_samples).amax(dim=2)
        else:
            next_q = self.critic.target_q(next_obs, self._sample(self.ema_actor, next_obs, self.generator))
        return td_target(batch.rewards, batch.not_done, next_q.amin(dim=0), c.discount)

    def update(self, stage: str, batch: Batch, step: int) -> Metrics:
        c = self.config
        # Critic: Σ_j MSE(Q_j(s, a), y)
        y = self._target(batch)
        critic_loss = (self.critic(batch.obs, batch.actions) - y).pow(2).mean(dim=1).sum()
        optimizer_step(self.critic_opt, critic_loss, self.critic.online.parameters(), c.grad_norm)

        # Actor: L_d + η·(−Q_j / E|Q_k|), with the gradient through the whole reverse chain
        bc_loss = self.diffusion.loss(self.actor, batch.actions, batch.obs, self.generator)
        new_actions = self._sample(self.actor, batch.obs, self.generator)
        self.critic.online.requires_grad_(False)  # the actor loss trains θ only
        q = self.critic(batch.obs, new_actions)
        self.critic.online.requires_grad_(True)
        first = torch.rand((), generator=self.generator, device=self.device) < 0.5
        q_j, q_k = torch.where(first, q[0], q[1]), torch.where(first, q[1], q[0])
        q_loss = -q_j.mean() / q_k.abs().mean().detach()
        actor_loss = bc_loss + c.eta * q_loss
        optimizer_step(self.actor_opt, actor_loss, self.actor.parameters(), c.grad_norm)

        # Targets and schedules
        if step % c.ema_every == 0:
            if step < c.ema_start:
                hard_update_(self.ema_actor, self.actor)
            else:
                polyak_update_(self.ema_actor, self.actor, 1.0 - c.ema_decay)
        self.critic.update_target(c.tau)
        self.actor_sched.step()
        self.critic_sched.step()
        return {"critic_loss": critic_loss.detach(), "bc_loss": bc_loss.detach(), "q_loss": q_loss.detach(),
                "actor_loss": actor_loss.detach(), "q_mean": q.detach().mean()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw 50 actions per state from the online actor; pick one with probability softmax(min_j Q'_j)."""
        generator = generator or self.generator
        n, k = obs.shape[0], self.config.eval_candidates
        repeated = obs.repeat_interleave(k, dim=0)
        actions = self._sample(self.actor, repeated, generator)
        q = self.critic.target_q(repeated, actions).amin(dim=0).view(n, k)
        return softmax_choice(actions.view(n, k, -1), q, generator)
