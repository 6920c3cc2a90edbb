"""Clipped double-Q critic (TD3 / Diffusion-QL / IQL style) as one vectorized ensemble."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from offdiff.nets import EnsembleMLP, Mish, frozen_copy, polyak_update_


class DoubleQ(nn.Module):
    """`num_q` independent heads Q_j(s, a) = MLP_j(concat[s, a]), one batched matmul per layer for all.

    The input order is observation first, then action. `online` is trained; `target` is its frozen
    Polyak copy (registered, so it moves with `.to()` and is saved in the state dict; its parameters
    have requires_grad=False, so optimise `online.parameters()`).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        activation: type[nn.Module] = Mish,
        layer_norm: bool = False,
        num_q: int = 2,
    ):
        super().__init__()
        self.online = EnsembleMLP(num_q, obs_dim + act_dim, hidden, 1, activation, layer_norm)
        self.target = frozen_copy(self.online)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs (B, S), act (B, A) → Q values (num_q, B) of the online heads."""
        return self.online(torch.cat([obs, act], dim=-1)).squeeze(-1)

    @torch.no_grad()
    def target_q(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs (B, S), act (B, A) → Q values (num_q, B) of the target heads, without grad."""
        return self.target(torch.cat([obs, act], dim=-1)).squeeze(-1)

    def update_target(self, tau: float) -> None:
        """Polyak: θ' ← (1 − τ)·θ' + τ·θ."""
        polyak_update_(self.target, self.online, tau)


def td_target(
    reward: torch.Tensor, not_done: torch.Tensor, next_v: torch.Tensor, discount: float
) -> torch.Tensor:
    """One-step TD target y = r + (1 − done)·γ·V(s'); pass a next_v computed without grad."""
    return reward + not_done * discount * next_v
