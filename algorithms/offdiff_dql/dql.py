"""Diffusion-QL (Wang, Hunt, Zhou, ICLR 2023): a diffusion policy trained by BC plus Q-learning.

The policy π_θ is a 5-step discrete VP diffusion model over actions (ε-prediction), sampled by DDPM's ancestral
sampler (`sampler=dpm_solver`: DPM-Solver++, an ablation). Each step:

  critic:  y = r + γ·(1 − d)·min_j Q'_j(s', a'),  a' ~ π_EMA(·|s')   (max over 10 a' per head on AntMaze)
           L_Q = Σ_j ‖Q_j(s, a) − y‖²
  actor:   L_π = L_d(θ) − η / E|Q_k(s, a_θ)| · E[Q_j(s, a_θ)],   a_θ ~ π_θ(·|s) through the whole chain
           L_d(θ) = E ‖ε − ε_θ(√ᾱ_t a + √(1−ᾱ_t) ε, s, t)‖²,  j ~ coin flip, k the other head

Targets: Polyak critic copy (τ = 0.005) and an EMA actor (0.995, every 5 steps from step 1000; left at its
initial weights before then, as in the release).
Acting: 50 samples per state, one drawn from softmax(min_j Q'_j).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch

from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec, Metrics, Stage
from offdiff.config import AT_LEAST_1, FRACTION, NON_NEGATIVE, POSITIVE, UNIT, budget, field
from offdiff.critics import DoubleQ, td_target
from offdiff.data.buffer import Batch
from offdiff.diffusion import DiscreteVP, DiscreteVPSchedule, NoisePredictionMLP
from offdiff.errors import OffdiffError
from offdiff.nets import frozen_copy, hard_update_, polyak_update_, softmax_choice
from offdiff.optim import cosine_decay, optimizer_step
from offdiff_dql.presets import PRESETS


@dataclasses.dataclass(frozen=True)
class DQLConfig(AlgorithmConfig):
    """Defaults are the release's `main.py` defaults (halfcheetah-medium); presets set the rest per task."""

    steps: int = budget(2_000_000, "gradient steps of the one training stage")
    batch_size: int = field(256, "transitions per gradient step", AT_LEAST_1)
    lr: float = field(3e-4, "actor (diffusion policy) learning rate, Adam", POSITIVE)
    critic_lr: float = field(3e-4, "critic learning rate, Adam", POSITIVE)
    eta: float = field(1.0, "η: weight of the Q term against the diffusion (BC) loss", NON_NEGATIVE)
    grad_norm: float = field(9.0, "gradient-norm clip of actor and critic", POSITIVE)
    discount: float = field(0.99, "γ: discount of the TD target", UNIT)
    tau: float = field(0.005, "Polyak rate of the target critic", FRACTION)
    max_q_backup: bool = field(False, "TD target: max over `max_q_samples` next actions per head (AntMaze)")
    max_q_samples: int = field(10, "next actions sampled per state for the max-Q backup", AT_LEAST_1)
    n_timesteps: int = field(5, "diffusion steps of the policy", AT_LEAST_1)
    beta_min: float = field(0.1, "VP noise schedule: smallest β", POSITIVE)
    beta_max: float = field(10.0, "VP noise schedule: largest β", POSITIVE)
    hidden: int = field(256, "width of the hidden layers of actor and critic", AT_LEAST_1)
    ema_decay: float = field(0.995, "decay of the EMA actor (it makes the critic's target actions)", UNIT)
    ema_every: int = field(5, "update the EMA actor every N steps", AT_LEAST_1)
    ema_start: int = field(1000, "the first step of EMA updates", NON_NEGATIVE)
    ema_warmup: Literal["release", "copy"] = field(
        "release", "before ema_start: leave the EMA actor at its initial weights (the release) or copy the actor "
        "into it every ema_every steps (offdiff's earlier behaviour)")
    lr_schedule: Literal["released", "cosine", "constant"] = field(
        "released", "LR decay: the release's (barely decays; behind the published numbers), cosine to 0, or none")
    eval_candidates: int = field(50, "actions sampled per state when acting; one is drawn by softmax(Q)", AT_LEAST_1)
    # Added after runs existed: at their defaults they stay out of the run folder's hash (earlier runs keep theirs).
    sampler: Literal["ancestral", "dpm_solver"] = field(
        "ancestral", "the policy's sampler: DDPM ancestral (the release) or DPM-Solver++ (an ablation), everywhere "
        "the policy samples (actor loss, targets, acting)", hashed_at_default=False)
    solver_nfe: int = field(4, "DPM-Solver only: solver steps from t = N−1 to 0 (then one x̂₀ evaluation)", AT_LEAST_1,
                            hashed_at_default=False)
    solver_order: Literal[1, 2] = field(2, "DPM-Solver only: its order", hashed_at_default=False)


def released_schedule(total_steps: int, epoch: int = 1000, every_epochs: int = 50) -> Any:
    """The release's LR decay: CosineAnnealingLR(T_max = epochs) stepped once per 50 epochs, so it barely
    decays (factor 0.999 at the end of 2M steps). Kept as the default because the published numbers used it."""
    t_max = max(total_steps // epoch, 1)
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * (step // (epoch * every_epochs)) / t_max))


class DiffusionQL(Algorithm):
    name = "dql"
    display_name = "Diffusion-QL"
    Config = DQLConfig
    presets = PRESETS
    smoke_config = {"hidden": 32, "batch_size": 16, "eval_candidates": 4}

    def __init__(self, config: DQLConfig, spec: EnvSpec, device: torch.device, generator: torch.Generator):
        super().__init__(config, spec, device, generator)
        c = config
        if c.sampler == "dpm_solver" and c.n_timesteps < 2:
            raise OffdiffError("sampler=dpm_solver needs n_timesteps >= 2")
        schedule = DiscreteVPSchedule(c.n_timesteps, c.beta_min, c.beta_max)
        eps_net = NoisePredictionMLP(spec.obs_dim, spec.act_dim, hidden=c.hidden)
        self.actor = DiscreteVP(eps_net, schedule, spec.act_dim, clip=1.0).to(self.device)  # π_θ
        self.ema_actor = frozen_copy(self.actor)
        self.solver = {"solver": c.sampler, "nfe": c.solver_nfe, "order": c.solver_order}
        self.critic = DoubleQ(spec.obs_dim, spec.act_dim, hidden=(c.hidden,) * 3).to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.net.parameters(), lr=c.lr)
        self.critic_opt = torch.optim.Adam(self.critic.online.parameters(), lr=c.critic_lr)
        decay = {"released": released_schedule(c.steps), "cosine": cosine_decay(c.steps),
                 "constant": lambda step: 1.0}[c.lr_schedule]
        self.actor_sched = torch.optim.lr_scheduler.LambdaLR(self.actor_opt, decay)
        self.critic_sched = torch.optim.lr_scheduler.LambdaLR(self.critic_opt, decay)

    @classmethod
    def stage_plan(cls, config: DQLConfig) -> list[Stage]:
        return [Stage("main", config.steps, config.batch_size, q_calibration=True)]

    def modules(self) -> Mapping[str, torch.nn.Module]:  # the ε-networks: their parameters are the processes'
        return {"actor": self.actor.net, "ema_actor": self.ema_actor.net, "critic": self.critic}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def schedulers(self) -> Mapping[str, Any]:
        return {"actor": self.actor_sched, "critic": self.critic_sched}

    def _sample(self, actor: DiscreteVP, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return actor.sample(obs, generator, **self.solver)

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
        bc_loss = self.actor.loss(batch.actions, batch.obs, self.generator)
        new_actions = self._sample(self.actor, batch.obs, self.generator)
        self.critic.online.requires_grad_(False)  # the actor loss trains θ only
        q = self.critic(batch.obs, new_actions)
        self.critic.online.requires_grad_(True)
        first = torch.rand((), generator=self.generator, device=self.device) < 0.5
        q_j, q_k = torch.where(first, q[0], q[1]), torch.where(first, q[1], q[0])
        q_loss = -q_j.mean() / q_k.abs().mean().detach()
        actor_loss = bc_loss + c.eta * q_loss
        optimizer_step(self.actor_opt, actor_loss, self.actor.net.parameters(), c.grad_norm)

        # Targets and schedules
        if step % c.ema_every == 0:
            if step >= c.ema_start:
                polyak_update_(self.ema_actor.net, self.actor.net, 1.0 - c.ema_decay)
            elif c.ema_warmup == "copy":
                hard_update_(self.ema_actor.net, self.actor.net)
        self.critic.update_target(c.tau)
        self.actor_sched.step()
        self.critic_sched.step()
        return {"critic_loss": critic_loss.detach(), "bc_loss": bc_loss.detach(), "q_loss": q_loss.detach(),
                "actor_loss": actor_loss.detach(), "q_mean": q.detach().mean()}

    def critic_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.critic.target_q(obs, actions).amin(dim=0)  # the Q that picks the executed action

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw 50 actions per state from the online actor; pick one with probability softmax(min_j Q'_j)."""
        generator = generator or self.generator
        n, k = obs.shape[0], self.config.eval_candidates
        repeated = obs.repeat_interleave(k, dim=0)
        actions = self._sample(self.actor, repeated, generator)
        q = self.critic.target_q(repeated, actions).amin(dim=0).view(n, k)
        return softmax_choice(actions.view(n, k, -1), q, generator)
