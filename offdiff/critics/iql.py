"""IQL pieces: the expectile loss and the state-value network (Kostrikov et al., 2022)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from offdiff.nets import mlp


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
        activation: type[nn.Module] = nn.Mish,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, activation, layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)
