"""The scalar energy network of EDA's bottleneck diffusion model (IDQL's residual actor, summed to a scalar)."""

from __future__ import annotations

import torch
from torch import nn

from offdiff.nets import GaussianFourierFeatures, ResidualMLP


class EnergyMLP(nn.Module):
    """f(x_t | s, t) ∈ R: concat[Linear(x), time path, Linear(s)] → residual trunk → |A| outputs, summed.

    Time path: fixed Fourier features (W ~ N(0, scale²)) → Linear → SiLU → Linear. Widths for `hidden` = 256:
    action 128, time 32, state 96 (summing to `hidden`). With `obs_dim` = 0 there is no state input and the
    action takes `hidden − time_dim` (the paper's 2-D toy model). The trunk is `ResidualMLP` (pre-norm blocks,
    dropout on the branch input), ending in Linear(hidden → |A|) whose outputs are summed (paper App. D).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int = 256,
        num_blocks: int = 3,
        dropout: float = 0.1,
        time_dim: int = 32,
        fourier_scale: float = 30.0,
    ):
        super().__init__()
        action_width = hidden // 2 if obs_dim else hidden - time_dim
        state_width = hidden - action_width - time_dim
        if action_width < 1 or (obs_dim and state_width < 1):
            raise ValueError(f"hidden={hidden} leaves no room next to time_dim={time_dim}")
        self.time = nn.Sequential(
            GaussianFourierFeatures(time_dim, fourier_scale), nn.Linear(time_dim, time_dim), nn.SiLU(),
            nn.Linear(time_dim, time_dim),
        )
        self.action = nn.Linear(act_dim, action_width)
        self.state = nn.Linear(obs_dim, state_width) if obs_dim else None
        self.trunk = ResidualMLP(hidden, hidden, num_blocks, act_dim, dropout)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x_t: (B, A), t: (B,), cond: (B, S) → f: (B,). Every row is computed independently (no batch norm)."""
        parts = [self.action(x_t), self.time(t)]
        if self.state is not None:
            parts.append(self.state(cond))
        return self.trunk(torch.cat(parts, dim=-1)).sum(dim=-1)
