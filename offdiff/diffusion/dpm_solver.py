"""DPM-Solver in data-prediction form (Lu et al. 2022, "DPM-Solver++"), single-step, orders 1 and 2.

With λ = log α − log σ, h = λ_t − λ_s and x̂₀(x, s) the model's data prediction:

  1st order:  x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·x̂₀(x_s, s)
  2nd order:  r₁ = (λ_{s₁} − λ_s)/h
              u   = (σ_{s₁}/σ_s)·x_s − α_{s₁}·(e^{−r₁h} − 1)·x̂₀(x_s, s)
              x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·x̂₀(x_s, s) − (0.5/r₁)·α_t·(e^{−h} − 1)·[x̂₀(u, s₁) − x̂₀(x_s, s)]

Any VP schedule serves (its α, σ, λ). The time grid is uniform in t from `t_start` to `t_end` with `nfe`
intervals; a 2nd-order step spans two intervals and uses the middle grid point as s₁, and an odd `nfe` ends
with one 1st-order step (15 NFE, order 2: seven 2nd-order steps, then one 1st-order step). No thresholding,
no clipping, no final denoising (a caller's x̂₀ may clip; a final denoising step is the caller's).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from offdiff.diffusion.marginals import VPMarginals

DataPrediction = Callable[[torch.Tensor, float], torch.Tensor]
"""x̂₀ = fn(x_t (B, …), t) for one time t shared by the whole batch."""


def singlestep_orders(nfe: int, order: int) -> list[int]:
    """The order of each step: `order` repeated, with a 1st-order step taking up an odd remainder."""
    if order not in (1, 2):
        raise ValueError(f"DPM-Solver order must be 1 or 2, got {order}")
    if nfe < 1:
        raise ValueError(f"DPM-Solver needs at least one function evaluation, got {nfe}")
    return [1] * nfe if order == 1 else [2] * (nfe // 2) + [1] * (nfe % 2)


class _Coefficients:
    """α, σ, λ of the schedule at the grid points, as Python floats computed in float64."""

    def __init__(self, schedule: VPMarginals, grid: torch.Tensor):
        self.t = grid.tolist()
        self.alpha = schedule.alpha(grid).tolist()
        self.sigma = schedule.sigma(grid).tolist()
        self.lam = schedule.lam(grid).tolist()


def dpm_solver_sample(
    x0_fn: DataPrediction,
    x_T: torch.Tensor,
    schedule: VPMarginals,
    t_start: float,
    t_end: float,
    nfe: int = 15,
    order: int = 2,
) -> torch.Tensor:
    """Integrate the probability-flow ODE from x_T at `t_start` to `t_end`."""
    grid = torch.linspace(t_start, t_end, nfe + 1, dtype=torch.float64)
    c = _Coefficients(schedule, grid)
    x, i = x_T, 0
    for step_order in singlestep_orders(nfe, order):
        s, t = i, i + step_order
        h = c.lam[t] - c.lam[s]
        d0 = x0_fn(x, c.t[s])
        x_next = (c.sigma[t] / c.sigma[s]) * x - c.alpha[t] * math.expm1(-h) * d0
        if step_order == 2:
            s1 = i + 1
            r1 = (c.lam[s1] - c.lam[s]) / h
            u = (c.sigma[s1] / c.sigma[s]) * x - c.alpha[s1] * math.expm1(-r1 * h) * d0
            x_next = x_next - (0.5 / r1) * c.alpha[t] * math.expm1(-h) * (x0_fn(u, c.t[s1]) - d0)
        x, i = x_next, t
    return x
