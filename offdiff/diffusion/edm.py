"""The EDM schedule (Karras et al., 2022) as DTQL uses it: a variance-exploding process x_σ = x + σε, the
preconditioning coefficients, a truncated log-logistic density of training noise levels and the sampler's
noise levels. The process that uses them (denoiser, loss, samplers) is `offdiff.diffusion.processes.EDM`.

  c_skip(σ) = σ_d² / (σ² + σ_d²)      c_out(σ) = σ·σ_d / √(σ² + σ_d²)
  c_in(σ)   = 1 / √(σ² + σ_d²)        c_noise(σ) = ln(σ) / 4
  ln σ ~ Logistic(ln σ_d, 0.5), truncated to [σ_min, σ_max]
  sampling noise levels: σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ for i < N, σ_N = 0
"""

from __future__ import annotations

import dataclasses
import math

import torch


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

    def sampling_sigmas(self, steps: int, rho: float, like: torch.Tensor) -> torch.Tensor:
        """The sampler's `steps` noise levels σ_max → σ_min (uniform in σ^(1/ρ)), then 0: (steps + 1,), like `like`."""
        i = torch.arange(steps, device=like.device, dtype=like.dtype)
        inv = 1.0 / rho
        sigmas = (self.sigma_max**inv + i / max(steps - 1, 1) * (self.sigma_min**inv - self.sigma_max**inv)) ** rho
        return torch.cat([sigmas, sigmas.new_zeros(1)])
