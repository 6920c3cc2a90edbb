"""The EDM process (Karras et al., 2022): the preconditioned denoiser around a backbone F_φ, its loss, its samplers.

  D_φ(x_σ; σ, s) = c_skip·x_σ + c_out·F_φ(c_in·x_σ, c_noise, s)          (optionally clamped to ±clip)
  L(x; φ) = E_{σ,ε} mean ((D_φ(x + σε; σ, s) − x) / c_out(σ))²,  σ ~ the schedule's log-logistic density

Unclamped, L is the F-space regression ‖F_φ − (x − c_skip·x_σ)/c_out‖², i.e. the x-space error weighted by
λ(σ) = 1/c_out² (EDM's weighting). With x a policy's action and φ frozen it is DTQL's trust-region loss.

Sampling (`solver`): x_0 ~ N(0, σ_max² I) on the schedule's noise levels σ_0 > … > σ_{N−1} > σ_N = 0;
d_i = (x_i − D(x_i; σ_i))/σ_i, x_{i+1} = x_i + (σ_{i+1} − σ_i)·d_i ("euler"); "heun" (EDM's deterministic
sampler, Algorithm 1) corrects that step by the mean of d_i and d at x_{i+1} while σ_{i+1} > 0.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from offdiff.diffusion.backbones import Backbone
from offdiff.diffusion.edm import EDMSchedule

Solver = Literal["heun", "euler"]


class EDM(nn.Module):
    """D_φ(x_σ; σ, s) around a backbone F_φ(x, c_noise, cond); `clip` clamps D (DTQL: the action bound)."""

    def __init__(self, net: Backbone, schedule: EDMSchedule, act_dim: int, clip: float | None = None):
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.act_dim = act_dim
        self.clip = clip

    def forward(self, x_noisy: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x_noisy (B, A), sigma (B, 1), cond (B, S) → D (B, A)."""
        k = self.schedule
        f = self.net(k.c_in(sigma) * x_noisy, k.c_noise(sigma).squeeze(-1), cond)
        denoised = k.c_skip(sigma) * x_noisy + k.c_out(sigma) * f
        return denoised if self.clip is None else denoised.clamp(-self.clip, self.clip)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator, solver: Solver = "heun", steps: int = 18,
               rho: float = 7.0) -> torch.Tensor:
        """One sample per row of `cond` (B, S) → (B, A) over `steps` noise levels, by Heun's or Euler's method."""
        if solver not in ("heun", "euler"):
            raise ValueError(f"unknown EDM solver {solver!r}; expected 'heun' or 'euler'")
        sigmas = self.schedule.sampling_sigmas(steps, rho, cond)
        x = torch.randn(cond.shape[0], self.act_dim, generator=generator, device=cond.device, dtype=cond.dtype)
        x = x * sigmas[0]
        for sigma, after in zip(sigmas[:-1], sigmas[1:], strict=True):
            level = sigma.expand(cond.shape[0], 1)
            d = (x - self(x, level, cond)) / sigma
            moved = x + (after - sigma) * d
            if solver == "heun" and after > 0:
                d_after = (moved - self(moved, after.expand(cond.shape[0], 1), cond)) / after
                moved = x + (after - sigma) * (d + d_after) / 2
            x = moved
        return x

    def loss_at(self, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """mean over batch and dims of ((D(x + σε; σ, s) − x) / c_out(σ))², for given σ (B, 1) and ε (B, A)."""
        return ((self(x + sigma * noise, sigma, cond) - x) / self.schedule.c_out(sigma)).square().mean()

    def loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The EDM loss with one σ ~ log-logistic and one ε ~ N(0, I) per sample (σ drawn first)."""
        sigma = self.schedule.sample_sigma(x0.shape[0], generator, x0.device).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return self.loss_at(x0, sigma, noise, cond)
