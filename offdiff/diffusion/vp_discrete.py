"""Discrete-time VP diffusion (DDPM with N steps) as used by Diffusion-QL.

Forward process: q(x_t | x_0) = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I), ᾱ_t = ∏_{i≤t} (1 − β_i), with 0-based step
index t = 0..N−1. The network predicts ε; sampling is DDPM ancestral sampling through the posterior
q(x_{t−1} | x_t, x̂_0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from offdiff.lazy import compile_disabled

NoiseModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""ε̂ = model(x_t (B, A), t (B,) long, cond (B, S))."""

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


@compile_disabled
def _draw_normal(count: int, shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator
                 ) -> list[torch.Tensor]:
    """`count` draws of N(0, I) of `shape`, one call each in order: x_N first, then the noise of steps N−1 … 1.

    Drawn before the chain, so the chain itself has no generator call and torch.compile traces it as one
    graph; the draws are the ones sampling step by step would make, in the same order.
    """
    return [torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype) for _ in range(count)]


class DiscreteVPSchedule(nn.Module):
    """The N-step DDPM schedule with its forward process, ε-prediction loss and ancestral sampler.

    `kind` picks the betas: "vp" (uses β_min, β_max), or "linear" / "cosine" with the DDPM and improved-DDPM
    defaults (β_min, β_max unused). All coefficients are computed in float64 and stored as float32
    buffers, indexed by the 0-based step t; `posterior_std` = exp(½·posterior_log_variance_clipped) for t ≥ 1.
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

    def loss(
        self, model: NoiseModel, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """DDPM ε-loss: mean over batch and dims of (ε̂(x_t, t, s) − ε)², t ~ U{0..N−1}, ε ~ N(0, I)."""
        t = torch.randint(0, self.n_steps, x0.shape[:1], generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return (model(self.q_sample(x0, t, noise), t, cond) - noise).square().mean()

    def sample(
        self,
        model: NoiseModel,
        cond: torch.Tensor,
        act_dim: int,
        generator: torch.Generator,
        clip: float | None = 1.0,
    ) -> torch.Tensor:
        """Ancestral sampling x_N ~ N(0, I) → x_0, one row per row of `cond`: (B, S) → (B, act_dim).

        Each step clamps x̂_0 to ±clip, takes the posterior mean and adds posterior noise (none at t = 0);
        the result is clamped too. Differentiable end to end: under grad it back-propagates through the
        whole chain (Diffusion-QL's actor loss); wrap the call in `torch.no_grad()` for targets/eval.
        """
        x, *step_noise = _draw_normal(self.n_steps, (cond.shape[0], act_dim), cond, generator)
        for t in reversed(range(self.n_steps)):
            steps = torch.full(x.shape[:1], t, dtype=torch.long, device=cond.device)  # contiguous, as in `loss`
            x0 = self.predict_x0(x, t, model(x, steps, cond))
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
            x = self.posterior_mean(x0, x, t)
            if t > 0:
                x = torch.addcmul(x, self.posterior_std[t], step_noise.pop(0))
        return x if clip is None else x.clamp(-clip, clip)
