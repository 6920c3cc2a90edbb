"""Diffusion models, split as processes × backbones (CleanDiffuser's split).

- Schedules: `DiscreteVPSchedule` (N-step DDPM), `ContinuousVPSchedule` (linear-β VP SDE), `EDMSchedule`.
- Solvers: `dpm_solver_sample` (DPM-Solver++ on any VP schedule); the ancestral and the EDM Heun/Euler
  samplers live with their processes.
- Processes (`offdiff.diffusion.processes`): `DiscreteVP`, `ContinuousVP`, `EDM`; each has
  `loss(x0, cond, generator)` and `sample(cond, generator, **solver)`.
- Backbones (`offdiff.diffusion.backbones`), one signature `net(x_t, t, cond)`: `NoisePredictionMLP`
  (Diffusion-QL), `ScoreMLP` (DTQL), `EnergyMLP` (EDA).
"""

from offdiff.diffusion.backbones import Backbone, EnergyMLP, NoisePredictionMLP, ScoreMLP
from offdiff.diffusion.dpm_solver import dpm_solver_sample, singlestep_orders
from offdiff.diffusion.edm import EDMSchedule
from offdiff.diffusion.processes import EDM, ContinuousVP, DiffusionProcess, DiscreteVP
from offdiff.diffusion.vp_continuous import ContinuousVPSchedule
from offdiff.diffusion.vp_discrete import DiscreteVPSchedule, cosine_betas, linear_betas, vp_betas

__all__ = [
    "EDM",
    "Backbone",
    "ContinuousVP",
    "ContinuousVPSchedule",
    "DiffusionProcess",
    "DiscreteVP",
    "DiscreteVPSchedule",
    "EDMSchedule",
    "EnergyMLP",
    "NoisePredictionMLP",
    "ScoreMLP",
    "cosine_betas",
    "dpm_solver_sample",
    "linear_betas",
    "singlestep_orders",
    "vp_betas",
]
