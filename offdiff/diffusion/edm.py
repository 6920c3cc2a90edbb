"""EDM (Karras et al., 2022) as DTQL uses it: a variance-exploding process x_σ = x + σε, the
preconditioned denoiser, a truncated log-logistic density of training noise levels, and the loss.

  c_skip(σ) = σ_d² / (σ² + σ_d²)      c_out(σ) = σ·σ_d / √(σ² + σ_d²)
  c_in(σ)   = 1 / √(σ² + σ_d²)        c_noise(σ) = ln(σ) / 4
  D_φ(x_σ; σ, s) = c_skip·x_σ + c_out·F_φ(c_in·x_σ, c_noise, s)          (optionally clamped to ±clip)
  ln σ ~ Logistic(ln σ_d, 0.5), truncated to [σ_min, σ_max]
  L(x; φ) = E_{σ,ε} mean ((D_φ(x + σε; σ, s) − x) / c_out(σ))²

Unclamped, L is the F-space regression ‖F_φ − (x − c_skip·x_σ)/c_out‖², i.e. the x-space error weighted by
λ(σ) = 1/c_out² (EDM's weighting). With x a policy's action and φ frozen it is DTQL's trust-region loss.

Sampling (`EDMDenoiser.sample`, EDM's deterministic Heun sampler, Karras et al. 2022, Algorithm 1): noise levels
σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ for i < N, σ_N = 0; x_0 ~ N(0, σ_max² I);
d_i = (x_i − D(x_i; σ_i))/σ_i, x_{i+1} = x_i + (σ_{i+1} − σ_i)·d_i, corrected by the mean of d_i and d at x_{i+1}
while σ_{i+1} > 0. DTQL's release never samples its diffusion model; offdiff samples it only as a diagnostic.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from offdiff.nets import frozen


@dataclasses.dataclass(frozen=True)
class EDMSchedule:
    """Noise-level range, σ_data, the preconditioning coefficients and the training density of σ."""

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    log_scale: float = 0.5  # scale of the logistic density of ln σ (its location is ln σ_data)

    @property
    def log_loc(self) -> float:
        return math.log(self.sigma_data)

    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * self.sigma_data / (sigma**2 + self.sigma_data**2).sqrt()

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        return (sigma**2 + self.sigma_data**2).rsqrt()

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.log() / 4

    def cdf(self, sigma: float) -> float:
        """CDF of the untruncated log-logistic density: sigmoid((ln σ − ln σ_d) / scale)."""
        return 1.0 / (1.0 + math.exp(-(math.log(sigma) - self.log_loc) / self.log_scale))

    def sigma_quantile(self, q: torch.Tensor) -> torch.Tensor:
        """Inverse CDF of the truncated density: σ = exp(loc + scale·logit(u)), u = cdf_min + q·(cdf_max − cdf_min)."""
        low, high = self.cdf(self.sigma_min), self.cdf(self.sigma_max)
        return torch.exp(self.log_loc + self.log_scale * torch.logit(low + q * (high - low)))

    def sample_sigma(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """n noise levels from the truncated log-logistic density, shape (n, 1)."""
        return self.sigma_quantile(torch.rand(n, 1, generator=generator, device=device))


class EDMDenoiser(nn.Module):
    """D_φ(x_σ; σ, s) around a raw network F_φ(x, t, cond); `clip` clamps D (DTQL: the action bound)."""

    def __init__(self, net: nn.Module, schedule: EDMSchedule, clip: float | None = None):
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.clip = clip

    def forward(self, x_noisy: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x_noisy (B, A), sigma (B, 1), cond (B, S) → D (B, A)."""
        k = self.schedule
        f = self.net(k.c_in(sigma) * x_noisy, k.c_noise(sigma).squeeze(-1), cond)
        denoised = k.c_skip(sigma) * x_noisy + k.c_out(sigma) * f
        return denoised if self.clip is None else denoised.clamp(-self.clip, self.clip)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, act_dim: int, generator: torch.Generator, steps: int = 18,
               rho: float = 7.0) -> torch.Tensor:
        """One sample per row of `cond` (B, S) → (B, act_dim) by EDM's Heun sampler over `steps` noise levels."""
        k, n = self.schedule, steps
        i = torch.arange(n, device=cond.device, dtype=cond.dtype)
        inv = 1.0 / rho
        sigmas = (k.sigma_max**inv + i / max(n - 1, 1) * (k.sigma_min**inv - k.sigma_max**inv)) ** rho
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
        x = torch.randn(cond.shape[0], act_dim, generator=generator, device=cond.device, dtype=cond.dtype) * sigmas[0]
        for sigma, after in zip(sigmas[:-1], sigmas[1:], strict=True):
            level = sigma.expand(cond.shape[0], 1)
            d = (x - self(x, level, cond)) / sigma
            moved = x + (after - sigma) * d
            if after > 0:
                d_after = (moved - self(moved, after.expand(cond.shape[0], 1), cond)) / after
                moved = x + (after - sigma) * (d + d_after) / 2
            x = moved
        return x

    def loss_at(self, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """mean over batch and dims of ((D(x + σε; σ, s) − x) / c_out(σ))², for given σ (B, 1) and ε (B, A)."""
        return ((self(x + sigma * noise, sigma, cond) - x) / self.schedule.c_out(sigma)).square().mean()

    def loss(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The EDM loss with one σ ~ log-logistic and one ε ~ N(0, I) per sample (σ drawn first)."""
        sigma = self.schedule.sample_sigma(x.shape[0], generator, x.device).to(x.dtype)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.loss_at(x, sigma, noise, cond)

    def trust_region_loss(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """DTQL's L_TR: the same loss at a policy's actions x, with φ frozen; gradients reach x through both
        the noisy input and the regression target."""
        with frozen(self):
            return self.loss(x, cond, generator)
