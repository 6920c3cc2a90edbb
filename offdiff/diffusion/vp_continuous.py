"""Continuous-time VP diffusion with a linear β(t) (Song et al. 2021; the schedule of DPM-Solver and EDA).

  β(t) = β₀ + (β₁ − β₀)·t,   t ∈ [0, 1]
  log α_t = −(β₁ − β₀)·t²/4 − β₀·t/2        (= −½∫₀ᵗ β(u) du)
  σ_t = √(1 − α_t²),   λ_t = log α_t − log σ_t  (half the log-SNR, decreasing in t)

q(x_t | x_0) = N(α_t·x_0, σ_t²·I). Every function takes a float or a tensor of times and computes in the
dtype of its input (pass float64 tensors for solver coefficients).
"""

from __future__ import annotations

import torch

from offdiff.diffusion.marginals import Time, VPMarginals, as_time


class ContinuousVPSchedule(VPMarginals):
    """The linear-β VP SDE's marginal coefficients, its forward perturbation and the training-time sampler."""

    def __init__(self, beta_0: float = 0.1, beta_1: float = 20.0, t_eps: float = 1e-3):
        if not 0 < beta_0 <= beta_1:
            raise ValueError(f"need 0 < beta_0 <= beta_1, got {beta_0}, {beta_1}")
        self.beta_0, self.beta_1, self.t_eps = beta_0, beta_1, t_eps

    def beta(self, t: Time) -> torch.Tensor:
        return self.beta_0 + (self.beta_1 - self.beta_0) * as_time(t)

    def log_alpha(self, t: Time) -> torch.Tensor:
        t = as_time(t)
        return -(self.beta_1 - self.beta_0) * t.square() / 4 - self.beta_0 * t / 2

    def sample_time(self, n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        """t = ε + (1 − ε)·u, u ~ U[0, 1): the training times, (n,) float32."""
        u = torch.rand(n, generator=generator, device=device)
        return self.t_eps + (1 - self.t_eps) * u

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = α_t·x_0 + σ_t·z, with t of shape x0.shape[:k] broadcast over the trailing dims."""
        shape = t.shape + (1,) * (x0.dim() - t.dim())
        return self.alpha(t).reshape(shape) * x0 + self.sigma(t).reshape(shape) * noise
