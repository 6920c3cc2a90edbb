"""A compact SAC (Haarnoja et al. 2018, with automatic entropy tuning) built on offdiff's parts.

Actor: offdiff's `TanhGaussianPolicy` (a = tanh(z), z ~ N(μ, σ²)) with the exact log-density of the
squashed action, log π(a|s) = log N(z; μ, σ²) − Σ log(1 − tanh²(z)). Critic: offdiff's vectorized
`DoubleQ` (ReLU) with a Polyak target. Temperature: α = exp(log α), trained so that the policy's
entropy tracks −dim(A). One `update` is one gradient step of critic, actor and α.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from offdiff.collect.adam import IEEESqrtAdam
from offdiff.critics import DoubleQ, td_target
from offdiff.nets import TanhGaussian, TanhGaussianPolicy, frozen

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # s, a, r, s', 1 − terminal


@dataclass(frozen=True)
class SACConfig:
    """SAC and schedule settings (`data collect --set key=value`); defaults are the usual SAC ones for MuJoCo."""

    hidden: int = 256  # width of every hidden layer of actor and critic
    layers: int = 2  # hidden layers
    batch_size: int = 256
    lr: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critic
    init_alpha: float = 1.0
    learning_starts: int = 5000  # uniform random actions and no updates before this step
    snapshots: int = 50  # policy snapshots, evenly spaced over the budget; the last one is the expert
    eval_episodes: int = 10  # episodes per snapshot evaluation
    checkpoint_every: int = 50_000  # env steps between checkpoints (taken at the next episode end)


def tanh_log_abs_det(z: torch.Tensor) -> torch.Tensor:
    """log |d tanh(z)/dz| = log(1 − tanh²(z)) = 2·(log 2 − z − softplus(−2z)), stable for large |z|."""
    return 2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z))


def sample_with_log_prob(dist: TanhGaussian, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised a = tanh(μ + σ·ξ) in (−1, 1) with its log-density log π(a|s), shapes (B, A) and (B,)."""
    noise = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device, dtype=dist.mean.dtype)
    z = dist.mean + dist.std * noise
    log_prob = torch.distributions.Normal(dist.mean, dist.std).log_prob(z) - tanh_log_abs_det(z)
    return torch.tanh(z), log_prob.sum(dim=-1)


class SAC(nn.Module):
    """Actor, twin critic with target, and log α, with their Adam optimizers (IEEE square roots: `adam`)."""

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig):
        super().__init__()
        hidden = (config.hidden,) * config.layers
        self.config = config
        self.actor = TanhGaussianPolicy(obs_dim, act_dim, hidden)
        self.critic = DoubleQ(obs_dim, act_dim, hidden, activation=nn.ReLU)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_alpha)))
        self.target_entropy = -float(act_dim)
        self.optimizers = {
            "actor": IEEESqrtAdam(self.actor.parameters(), lr=config.lr),
            "critic": IEEESqrtAdam(self.critic.online.parameters(), lr=config.lr),
            "alpha": IEEESqrtAdam([self.log_alpha], lr=config.lr),
        }

    def _step(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def update(self, batch: Batch, generator: torch.Generator) -> None:
        """One gradient step of critic, actor and temperature."""
        obs, act, reward, next_obs, not_done = batch
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_act, next_log_prob = sample_with_log_prob(self.actor(next_obs), generator)
            next_v = self.critic.target_q(next_obs, next_act).min(dim=0).values - alpha * next_log_prob
            target = td_target(reward, not_done, next_v, self.config.discount)
        critic_loss = (self.critic(obs, act) - target).pow(2).mean(dim=1).sum()
        self._step("critic", critic_loss)

        new_act, log_prob = sample_with_log_prob(self.actor(obs), generator)
        with frozen(self.critic.online):
            q = self.critic(obs, new_act).min(dim=0).values
        actor_loss = (alpha * log_prob - q).mean()
        self._step("actor", actor_loss)

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self._step("alpha", alpha_loss)
        self.critic.update_target(self.config.tau)

    def full_state(self) -> dict[str, Any]:
        """Modules and optimizers: everything needed to continue training bit for bit."""
        return {"modules": self.state_dict(), "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_full_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["modules"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
