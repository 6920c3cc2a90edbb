"""The continuous-time VP process: its backbone predicts ε, directly or as a scalar energy's gradient.

  prediction="noise":   ε̂(x_t | s, t) = net(x_t, t, s)
  prediction="energy":  f(x_t | s, t) = net(x_t, t, s) ∈ R,  ε̂ = −σ_t·∇_{x_t} f      (the bottleneck diffusion
                        model, BDM, Chen et al. 2024, Eq. 9-11)
  L(φ) = E_{t~U[ε,1], x0, z} Σ_j (ε̂(α_t x0 + σ_t z | s, t) − z)_j²                  (Eq. 10, mean over the batch)
  sampling: x_1 ~ N(0, I), then DPM-Solver++ on x̂₀ = (x_t − σ_t·ε̂)/α_t from t = 1 to t = ε (no clipping)

For an energy, at the optimum f(·|s, t) = log μ_t(·|s) + C(s, t), so `energy` compares (unnormalised) log
densities, e.g. EDA's implied Q = β·(f_π − f_μ). The loss back-propagates through the input gradient
(create_graph=True); sampling takes the same gradient without a graph, under `torch.enable_grad` even inside
`no_grad`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from offdiff.diffusion.backbones import Backbone
from offdiff.diffusion.dpm_solver import dpm_solver_sample
from offdiff.diffusion.vp_continuous import ContinuousVPSchedule
from offdiff.nets import frozen

Prediction = Literal["noise", "energy"]


class ContinuousVP(nn.Module):
    """A backbone `net(x_t (B, A), t (B,), cond (B, S))` → ε̂ (B, A) or an energy (B,), on a continuous VP schedule."""

    def __init__(self, net: Backbone, schedule: ContinuousVPSchedule, act_dim: int, prediction: Prediction = "noise"):
        super().__init__()
        if prediction not in ("noise", "energy"):
            raise ValueError(f"unknown prediction {prediction!r}; expected 'noise' or 'energy'")
        self.net, self.schedule, self.act_dim, self.prediction = net, schedule, act_dim, prediction

    def energy(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """f(x_t | s, t), (B,): one plain forward of an energy backbone."""
        return self.net(x_t, t, cond)

    def noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """ε̂ at x_t, (B, A). For an energy, −σ_t·∇_x f(x | s, t): rows are independent, so ∇ of Σ_b f_b is per row."""
        if self.prediction == "noise":
            return self.net(x_t, t, cond)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.net(x, t, cond).sum(), x, create_graph=create_graph)
        return -self.schedule.sigma(t).to(grad.dtype)[:, None] * grad

    def loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Denoising score matching: mean_b Σ_j (ε̂_j − z_j)², t ~ U[ε, 1] drawn first, then z ~ N(0, I)."""
        t = self.schedule.sample_time(x0.shape[0], generator, x0.device)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        eps = self.noise(self.schedule.perturb(x0, t, z), t, cond, create_graph=True)
        return (eps - z).square().sum(dim=-1).mean()

    def data_prediction(self, x_t: torch.Tensor, t: float, cond: torch.Tensor) -> torch.Tensor:
        """x̂₀ = (x_t − σ_t·ε̂)/α_t for one time t shared by the batch (no graph: for sampling)."""
        alpha, sigma = float(self.schedule.alpha(t)), float(self.schedule.sigma(t))
        eps = self.noise(x_t, x_t.new_full(x_t.shape[:1], t), cond)
        return (x_t - sigma * eps) / alpha

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator, nfe: int = 15, order: int = 2) -> torch.Tensor:
        """One action per row of `cond`: x_1 ~ N(0, I), then DPM-Solver to t = ε; (B, S) → (B, A), unclipped.

        The parameters are frozen meanwhile: the input gradients need no graph to the weights.
        """
        x = torch.randn(cond.shape[0], self.act_dim, generator=generator, device=cond.device, dtype=cond.dtype)
        with frozen(self):
            return dpm_solver_sample(lambda x_t, t: self.data_prediction(x_t, t, cond), x, self.schedule,
                                     1.0, self.schedule.t_eps, nfe, order)
