"""Diffusion processes: each binds a backbone (`net`) to a schedule and has one face,

    process.loss(x0 (B, A), cond (B, S), generator) -> scalar loss
    process.sample(cond (B, S), generator, **solver) -> (B, A)

with its solver chosen by keyword (`solver=...` and the solver's own settings), so a plugin swaps the
process or the sampler by config. A process's only parameters are its backbone's, under `net.`; the
optimizers belong to the algorithm.

- `DiscreteVP`: N-step DDPM, ε-prediction; ancestral sampling or DPM-Solver++ (Diffusion-QL).
- `ContinuousVP`: linear-β VP SDE, ε-prediction or a scalar energy's gradient; DPM-Solver++ (EDA).
- `EDM`: preconditioned denoiser, log-logistic σ density; Heun or Euler sampling (DTQL).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from offdiff.diffusion.processes.continuous_vp import ContinuousVP
from offdiff.diffusion.processes.discrete_vp import DiscreteVP
from offdiff.diffusion.processes.edm import EDM


class DiffusionProcess(Protocol):
    """The face every process has."""

    def loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def sample(self, cond: torch.Tensor, generator: torch.Generator, **solver: Any) -> torch.Tensor: ...


__all__ = ["ContinuousVP", "DiffusionProcess", "DiscreteVP", "EDM"]
