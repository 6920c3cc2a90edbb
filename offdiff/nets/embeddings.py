"""Embeddings of the diffusion time / noise level."""

from __future__ import annotations

import math

import torch
from torch import nn

from offdiff.nets.activations import Mish


def _column(t: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, 1) → (B, 1)."""
    return t.reshape(t.shape[0], 1)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style embedding [sin(t·f_k), cos(t·f_k)], f_k = exp(−k·ln(10⁴)/(dim/2 − 1)), k < dim/2."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2 or dim < 4:
            raise ValueError(f"SinusoidalEmbedding needs an even dim >= 4, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(1e4) * torch.arange(half, dtype=torch.float64) / (half - 1))
        self.register_buffer("freqs", freqs.float(), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (B,) or (B, 1) float → (B, dim)."""
        args = _column(t) * self.freqs
        return torch.cat([args.sin(), args.cos()], dim=-1)


class TimeEmbedding(nn.Sequential):
    """Sinusoidal embedding → Linear(dim, 2·dim) → Mish → Linear(2·dim, dim) (Diffusion-QL, DTQL)."""

    def __init__(self, dim: int = 16):
        super().__init__(
            SinusoidalEmbedding(dim), nn.Linear(dim, 2 * dim), Mish(), nn.Linear(2 * dim, dim)
        )


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features [sin(2πWt), cos(2πWt)] with fixed W ~ N(0, scale²) (EDA).

    W is drawn once at construction and kept as a persistent buffer, so it is saved in the state dict
    and never trained.
    """

    def __init__(self, embed_dim: int = 32, scale: float = 30.0):
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"GaussianFourierFeatures needs an even embed_dim, got {embed_dim}")
        self.register_buffer("W", torch.randn(embed_dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (B,) or (B, 1) float → (B, embed_dim)."""
        args = 2 * math.pi * _column(t) * self.W
        return torch.cat([args.sin(), args.cos()], dim=-1)
