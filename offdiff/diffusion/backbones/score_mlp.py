"""DTQL's score network F_φ(x, t, s), the backbone of its EDM process."""

from __future__ import annotations

import torch
from torch import nn

from offdiff.nets import Mish, TimeEmbedding, mlp


class ScoreMLP(nn.Module):
    """F(x, t, s) = trunk(concat[x, s, TimeEmbedding(t)]) (DTQL's `ScoreNetwork` + `MLPNetwork`).

    The trunk is Linear(in → h), then `num_layers − 1` blocks [Linear(h → h), Mish], then Linear(h → A).
    As in the paper's code there is no activation after the first Linear, so the first two layers compose
    into one linear map; kept for the same capacity and behaviour. PyTorch default init.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, num_layers: int = 4, time_dim: int = 16):
        super().__init__()
        self.time_embedding = TimeEmbedding(time_dim)
        self.net = nn.Sequential(
            nn.Linear(act_dim + obs_dim + time_dim, hidden),  # no activation here (the paper's code)
            *mlp(hidden, (hidden,) * (num_layers - 1), act_dim, Mish),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (B, A), t: (B,) float time input (c_noise for a denoiser), cond: (B, S) → (B, A)."""
        return self.net(torch.cat([x, cond, self.time_embedding(t.to(x.dtype))], dim=-1))
