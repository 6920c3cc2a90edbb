"""Diffusion-QL's ε-network: the backbone of its discrete VP process."""

from __future__ import annotations

import torch
from torch import nn

from offdiff.nets import Mish, TimeEmbedding, mlp


class NoisePredictionMLP(nn.Module):
    """Diffusion-QL's ε-network: ε̂(x_t, t, s) = MLP(concat[x_t, TimeEmbedding(t), s]).

    Three Mish hidden layers of width `hidden`, then Linear(→ act_dim). The time input is the raw
    integer step index cast to float (not normalised), as in the paper's code.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, time_dim: int = 16):
        super().__init__()
        self.time_embedding = TimeEmbedding(time_dim)
        self.net = mlp(act_dim + time_dim + obs_dim, (hidden, hidden, hidden), act_dim, Mish)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x_t: (B, A), t: (B,) long, cond: (B, S) → ε̂: (B, A)."""
        t_emb = self.time_embedding(t.to(x_t.dtype))
        return self.net(torch.cat([x_t, t_emb, cond], dim=-1))
