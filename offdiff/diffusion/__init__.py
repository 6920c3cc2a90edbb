"""Diffusion backbones: schedules, losses and samplers, and the networks they drive.

Here now:
- `DiscreteVPSchedule` + `NoisePredictionMLP`: Diffusion-QL's N-step DDPM (ε-prediction, ancestral sampler).

Room reserved for later additions (one module each):
- EDM / Karras preconditioning (c_skip, c_out, c_in, c_noise), log-logistic σ density and F-space loss (DTQL).
- Continuous-time VP schedule (log α_t = −(β₁−β₀)t²/4 − β₀t/2) and the DPM-Solver++ sampler (EDA).
"""

from offdiff.diffusion.networks import NoisePredictionMLP
from offdiff.diffusion.vp_discrete import DiscreteVPSchedule, NoiseModel, cosine_betas, linear_betas, vp_betas

__all__ = [
    "DiscreteVPSchedule",
    "NoiseModel",
    "NoisePredictionMLP",
    "cosine_betas",
    "linear_betas",
    "vp_betas",
]
