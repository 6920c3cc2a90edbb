"""Plain and residual MLPs: the trunks of every network in the suite."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from offdiff.nets.activations import Mish


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    activation: type[nn.Module] = Mish,
    layer_norm: bool = False,
) -> nn.Sequential:
    """Linear → [LayerNorm] → activation for each hidden width, then a final Linear (PyTorch default init)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(in_dim, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(activation())
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Pre-norm residual block: x + W₂ SiLU(W₁ LayerNorm(Dropout(x))); dropout acts on the branch only."""

    def __init__(self, dim: int, expansion: int = 4, dropout: float = 0.0):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
            nn.Linear(dim, expansion * dim),
            nn.SiLU(),
            nn.Linear(expansion * dim, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ResidualMLP(nn.Sequential):
    """Linear(in→dim), `num_blocks` residual blocks, SiLU, Linear(dim→out): the IDQL/EDA trunk."""

    def __init__(self, in_dim: int, dim: int, num_blocks: int, out_dim: int, dropout: float = 0.0):
        super().__init__(
            nn.Linear(in_dim, dim),
            *(ResidualBlock(dim, dropout=dropout) for _ in range(num_blocks)),
            nn.SiLU(),
            nn.Linear(dim, out_dim),
        )
