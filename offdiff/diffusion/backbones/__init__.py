"""Diffusion backbones: the networks a diffusion process drives, all with one signature.

    net(x_t (B, A), t (B,), cond (B, S)) -> (B, A), or (B,) for a scalar energy

`t` is the process's time input: the integer step index of a discrete VP process (as a float in the
network), c_noise(σ) = ln(σ)/4 of EDM, or t ∈ [ε, 1] of a continuous VP process. What the output means
(ε̂, EDM's F, an energy) is the process's business, not the backbone's.

- `NoisePredictionMLP`: Diffusion-QL's ε-network.
- `ScoreMLP`: DTQL's score network F_φ.
- `EnergyMLP`: EDA's scalar energy network.
"""

from __future__ import annotations

from typing import Protocol

import torch

from offdiff.diffusion.backbones.energy_mlp import EnergyMLP
from offdiff.diffusion.backbones.epsilon_mlp import NoisePredictionMLP
from offdiff.diffusion.backbones.score_mlp import ScoreMLP


class Backbone(Protocol):
    """The one backbone signature: `net(x_t, t, cond) -> Tensor`."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...


__all__ = ["Backbone", "EnergyMLP", "NoisePredictionMLP", "ScoreMLP"]
