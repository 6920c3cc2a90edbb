"""The discrete-time VP schedule (DDPM with N steps) as used by Diffusion-QL.

Forward process: q(x_t | x_0) = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I), ᾱ_t = ∏_{i≤t} (1 − β_i), with 0-based step
index t = 0..N−1, and the posterior q(x_{t−1} | x_t, x_0). For DPM-Solver the schedule extends to a real
index t ∈ [0, N−1] by interpolating log ᾱ linearly between steps (Lu et al. 2022's discrete-time
extension): log α_t = ½·log ᾱ_t, σ_t = √(1 − α_t²). The process that uses it is
`offdiff.diffusion.processes.DiscreteVP`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from offdiff.diffusion.marginals import Time, VPMarginals, as_time

ScheduleKind = Literal["vp", "linear", "cosine"]


def vp_betas(n_steps: int, beta_min: float, beta_max: float) -> torch.Tensor:
    """β_i = 1 − exp(−β_min/N − ½(β_max − β_min)(2i − 1)/N²), i = 1..N (the VP SDE discretised, DDGAN)."""
    i = torch.arange(1, n_steps + 1, dtype=torch.float64)
    return 1 - torch.exp(-beta_min / n_steps - 0.5 * (beta_max - beta_min) * (2 * i - 1) / n_steps**2)


def linear_betas(n_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    """β evenly spaced in [β_start, β_end] (Ho et al. 2020)."""
    return torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)


def cosine_betas(n_steps: int, s: float = 0.008) -> torch.Tensor:
    """ᾱ(u) ∝ cos²((u + s)/(1 + s)·π/2), u = i/N; β_i = 1 − ᾱ_i/ᾱ_{i−1} clipped at 0.999 (improved DDPM)."""
    u = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    alphas_cumprod = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(0, 0.999)


class DiscreteVPSchedule(nn.Module, VPMarginals):
    """The N-step DDPM schedule: its coefficients, forward process, x̂_0 from ε and the posterior mean.

    `kind` picks the betas: "vp" (uses β_min, β_max), or "linear" / "cosine" with the DDPM and improved-DDPM
    defaults (β_min, β_max unused). All coefficients are computed in float64 and stored as float32
    buffers, indexed by the 0-based step t; `posterior_std` = exp(½·posterior_log_variance_clipped) for t ≥ 1.
    `log_alpha` (and with it `alpha`, `sigma`, `lam`) takes a real index t in float64, on the host.
    """

    def __init__(
        self, n_steps: int = 5, beta_min: float = 0.1, beta_max: float = 10.0, kind: ScheduleKind = "vp"
    ):
        super().__init__()
        self.n_steps = n_steps
        if kind == "vp":
            betas = vp_betas(n_steps, beta_min, beta_max)
        elif kind == "linear":
            betas = linear_betas(n_steps)
        elif kind == "cosine":
            betas = cosine_betas(n_steps)
        else:
            raise ValueError(f"unknown beta schedule {kind!r}; expected 'vp', 'linear' or 'cosine'")
        alphas = 1 - betas
        ac = torch.cumprod(alphas, dim=0)
        ac_prev = torch.cat([ac.new_ones(1), ac[:-1]])
        posterior_variance = betas * (1 - ac_prev) / (1 - ac)
        coefficients = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": ac.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(),
            "sqrt_recip_alphas_cumprod": ac.rsqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / ac - 1).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
            "posterior_std": posterior_variance.sqrt(),
            "posterior_mean_coef1": betas * ac_prev.sqrt() / (1 - ac),
            "posterior_mean_coef2": (1 - ac_prev) * alphas.sqrt() / (1 - ac),
        }
        for name, value in coefficients.items():
            self.register_buffer(name, value.float(), persistent=False)
        self._half_log_alphas_cumprod = ac.log() / 2  # float64, host: DPM-Solver's coefficients

    def log_alpha(self, t: Time) -> torch.Tensor:
        """log α_t = ½·log ᾱ_t, linear between the integer steps, for a real step index t ∈ [0, N−1]."""
        t = as_time(t)
        table = self._half_log_alphas_cumprod
        low = t.floor().clamp(0, max(self.n_steps - 2, 0)).long()
        return torch.lerp(table[low], table[(low + 1).clamp(max=self.n_steps - 1)], t - low)

    @staticmethod
    def _at(coef: torch.Tensor, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
        """coef[t] shaped to broadcast against x: a scalar for an int t, else t.shape + singleton dims."""
        c = coef[t]
        return c.reshape(c.shape + (1,) * (x.dim() - c.dim())) if c.dim() else c

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε."""
        scaled_x0 = self._at(self.sqrt_alphas_cumprod, t, x0) * x0
        return torch.addcmul(scaled_x0, self._at(self.sqrt_one_minus_alphas_cumprod, t, x0), noise)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε̂."""
        scaled_x_t = self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
        return torch.addcmul(scaled_x_t, self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t), eps, value=-1)

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """Mean of q(x_{t−1} | x_t, x_0) = c1_t·x_0 + c2_t·x_t."""
        scaled_x_t = self._at(self.posterior_mean_coef2, t, x_t) * x_t
        return torch.addcmul(scaled_x_t, self._at(self.posterior_mean_coef1, t, x_t), x0)
