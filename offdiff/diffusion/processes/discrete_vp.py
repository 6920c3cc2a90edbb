"""The discrete VP process (DDPM, ε-prediction) as Diffusion-QL uses it: its loss and two samplers.

  L(θ) = E_{t~U{0..N−1}, ε} mean (ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t, s) − ε)²
  x̂₀(x_t, t) = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε_θ(x_t, t, s), clamped to ±clip

Samplers (`solver`), both from x_{N−1} ~ N(0, I) and both clamping x̂₀ and the result to ±clip:
- "ancestral" (DDPM, the release's): x_{t−1} = posterior mean(x̂₀, x_t) + posterior std·z, no noise at t = 0
  (whose posterior mean is x̂₀): N network evaluations.
- "dpm_solver": DPM-Solver++ (`offdiff.diffusion.dpm_solver`) on the schedule's real-index extension, `nfe`
  intervals uniform in t from N−1 to 0, then x̂₀ at t = 0 (the step ancestral sampling ends with):
  nfe + 1 evaluations.
Both are differentiable end to end (Diffusion-QL's actor loss back-propagates through the chain); wrap a
call in `torch.no_grad()` for targets and evaluation.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from offdiff.diffusion.backbones import Backbone
from offdiff.diffusion.dpm_solver import dpm_solver_sample
from offdiff.diffusion.vp_discrete import DiscreteVPSchedule
from offdiff.lazy import compile_disabled

Solver = Literal["ancestral", "dpm_solver"]


@compile_disabled
def _draw_normal(count: int, shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator
                 ) -> list[torch.Tensor]:
    """`count` draws of N(0, I) of `shape`, one call each in order: x_N first, then the noise of steps N−1 … 1.

    Drawn before the chain, so the chain itself has no generator call and torch.compile traces it as one
    graph; the draws are the ones sampling step by step would make, in the same order.
    """
    return [torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype) for _ in range(count)]


class DiscreteVP(nn.Module):
    """An ε-backbone `net(x_t (B, A), t (B,) step index, cond (B, S))` on an N-step DDPM schedule."""

    def __init__(self, net: Backbone, schedule: DiscreteVPSchedule, act_dim: int, clip: float | None = 1.0):
        super().__init__()
        self.net, self.schedule, self.act_dim, self.clip = net, schedule, act_dim, clip

    def loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """DDPM ε-loss: mean over batch and dims of (ε̂(x_t, t, s) − ε)², t ~ U{0..N−1} drawn first, ε ~ N(0, I)."""
        t = torch.randint(0, self.schedule.n_steps, x0.shape[:1], generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return (self.net(self.schedule.q_sample(x0, t, noise), t, cond) - noise).square().mean()

    def sample(self, cond: torch.Tensor, generator: torch.Generator, solver: Solver = "ancestral", nfe: int = 4,
               order: int = 2) -> torch.Tensor:
        """One action per row of `cond`: (B, S) → (B, A). `nfe` and `order` are DPM-Solver's."""
        if solver == "ancestral":
            x = self._ancestral(cond, generator)
        elif solver == "dpm_solver":
            x = self._dpm_solver(cond, generator, nfe, order)
        else:
            raise ValueError(f"unknown discrete VP solver {solver!r}; expected 'ancestral' or 'dpm_solver'")
        return x if self.clip is None else x.clamp(-self.clip, self.clip)

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        return x0 if self.clip is None else x0.clamp(-self.clip, self.clip)

    def _ancestral(self, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        k = self.schedule
        x, *step_noise = _draw_normal(k.n_steps, (cond.shape[0], self.act_dim), cond, generator)
        for t in reversed(range(k.n_steps)):
            steps = torch.full(x.shape[:1], t, dtype=torch.long, device=cond.device)  # contiguous, as in `loss`
            x = k.posterior_mean(self._clip(k.predict_x0(x, t, self.net(x, steps, cond))), x, t)
            if t > 0:
                x = torch.addcmul(x, k.posterior_std[t], step_noise.pop(0))
        return x

    def _data_prediction(self, x_t: torch.Tensor, t: float, cond: torch.Tensor) -> torch.Tensor:
        """x̂₀ = (x_t − σ_t·ε̂)/α_t, clamped, at a real step index t shared by the batch."""
        alpha, sigma = float(self.schedule.alpha(t)), float(self.schedule.sigma(t))
        eps = self.net(x_t, x_t.new_full(x_t.shape[:1], t), cond)
        return self._clip((x_t - sigma * eps) / alpha)

    def _dpm_solver(self, cond: torch.Tensor, generator: torch.Generator, nfe: int, order: int) -> torch.Tensor:
        if self.schedule.n_steps < 2:
            raise ValueError("DPM-Solver on a discrete VP schedule needs at least 2 steps")
        x = torch.randn(cond.shape[0], self.act_dim, generator=generator, device=cond.device, dtype=cond.dtype)
        x = dpm_solver_sample(lambda x_t, t: self._data_prediction(x_t, t, cond), x, self.schedule,
                              float(self.schedule.n_steps - 1), 0.0, nfe, order)
        return self._data_prediction(x, 0.0, cond)
