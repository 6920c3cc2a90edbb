"""Diffusion backbones: schedules, losses and samplers, and the networks they drive.

Here now:
- `DiscreteVPSchedule` + `NoisePredictionMLP`: Diffusion-QL's N-step DDPM (ε-prediction, ancestral sampler).
- `EDMSchedule` + `EDMDenoiser` + `ScoreMLP`: EDM preconditioning, log-logistic σ density, F-space loss (DTQL).
- `ContinuousVPSchedule` + `dpm_solver_sample` + `BottleneckDiffusion` + `EnergyMLP`: the continuous-time VP
  schedule, DPM-Solver++ and the scalar-energy diffusion model whose ε̂ = −σ_t ∇_a f (EDA).
"""

from offdiff.diffusion.dpm_solver import dpm_solver_sample, singlestep_orders
from offdiff.diffusion.edm import EDMDenoiser, EDMSchedule
from offdiff.diffusion.energy import BottleneckDiffusion
from offdiff.diffusion.energy_net import EnergyMLP
from offdiff.diffusion.networks import NoisePredictionMLP
from offdiff.diffusion.score_mlp import ScoreMLP
from offdiff.diffusion.vp_continuous import ContinuousVPSchedule
from offdiff.diffusion.vp_discrete import DiscreteVPSchedule, NoiseModel, cosine_betas, linear_betas, vp_betas

__all__ = [
    "BottleneckDiffusion",
    "ContinuousVPSchedule",
    "DiscreteVPSchedule",
    "EDMDenoiser",
    "EDMSchedule",
    "EnergyMLP",
    "NoiseModel",
    "NoisePredictionMLP",
    "ScoreMLP",
    "cosine_betas",
    "dpm_solver_sample",
    "linear_betas",
    "singlestep_orders",
    "vp_betas",
]
