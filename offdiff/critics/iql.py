"""IQL (Kostrikov et al., 2022): the expectile loss, the state-value network, and the twin-Q + V critic.

One step of IQL on a batch (s, a, r, s', d):

  L_V = E[ |τ − 1(u < 0)|·u² ],   u = stopgrad(min_j Q̂_j(s, a)) − V(s)
  y   = r + γ·(1 − d)·stopgrad(V(s'))
  L_Q = c·Σ_j E[(Q_j(s, a) − y)²]

Q̂ is the Polyak target (the paper's Eq. 6, EDA) or the online heads (DTQL's code): `value_from_target`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from offdiff.critics.double_q import DoubleQ, td_target
from offdiff.data.buffer import Batch
from offdiff.nets import Mish, mlp


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """L_τ = mean |τ − 1(u < 0)|·u² with u = diff (= Q(s, a) − V(s) for IQL's value loss)."""
    weight = (expectile - (diff < 0).to(diff.dtype)).abs()
    return (weight * diff.square()).mean()


class ValueNet(nn.Module):
    """State value V(s): an MLP of the observation, (B, S) → (B,)."""

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        activation: type[nn.Module] = Mish,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, activation, layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class IQLCritic(nn.Module):
    """Twin Q heads (one vectorized ensemble, with a Polyak target) and a value net V, trained by IQL.

    `q` is a `DoubleQ`; optimise `q.online.parameters()` and `v.parameters()` (see `parameters_to_train`).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
        q_layer_norm: bool = False,
        v_layer_norm: bool = False,
        value_from_target: bool = True,
        q_loss_scale: float = 1.0,
    ):
        super().__init__()
        self.q = DoubleQ(obs_dim, act_dim, hidden, activation, q_layer_norm)
        self.v = ValueNet(obs_dim, hidden, activation, v_layer_norm)
        self.value_from_target = value_from_target
        self.q_loss_scale = q_loss_scale

    def parameters_to_train(self) -> list[nn.Parameter]:
        return [*self.q.online.parameters(), *self.v.parameters()]

    def loss(self, batch: Batch, expectile: float, discount: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_V + L_Q for one batch, and detached metrics."""
        with torch.no_grad():
            q_hat = self.q.target_q(batch.obs, batch.actions) if self.value_from_target else self.q(
                batch.obs, batch.actions)
            q_min = q_hat.amin(dim=0)
            y = td_target(batch.rewards, batch.not_done, self.v(batch.next_obs), discount)
        v = self.v(batch.obs)
        value_loss = expectile_loss(q_min - v, expectile)
        q = self.q(batch.obs, batch.actions)
        q_loss = self.q_loss_scale * (q - y).pow(2).mean(dim=1).sum()
        metrics = {"value_loss": value_loss.detach(), "q_loss": q_loss.detach(), "q_data": q.detach().mean(),
                   "v_data": v.detach().mean()}
        return value_loss + q_loss, metrics

    def q_min(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """min_j Q_j(s, a) of the online heads (with grad), (B,)."""
        return self.q(obs, act).amin(dim=0)

    @torch.no_grad()
    def target_q_min(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """min_j Q'_j(s, a) of the target heads, (B,)."""
        return self.q.target_q(obs, act).amin(dim=0)

    def update_target(self, tau: float) -> None:
        self.q.update_target(tau)
