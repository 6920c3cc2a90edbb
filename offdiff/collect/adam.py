"""Adam whose square root is IEEE's, so that SAC's updates do not depend on the CPU computing them.

torch's float32 square root on the CPU is not correctly rounded (on an AMD EPYC, 17% of random values
differ from IEEE's), and its bits change with what executes it: under emulation, other values
differ (results/local-suite/portable/ABOUT.md). Adam takes one per weight per step, and 150k SAC
steps grow one ulp into other policies. numpy's square root is the CPU's `sqrtps`, which IEEE 754 fixes to
the correctly rounded result on every CPU. Everything else is `torch.optim.Adam`'s update (no weight decay,
no amsgrad): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch


def ieee_sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of a CPU tensor (the device's own elsewhere)."""
    if x.device.type != "cpu":
        return x.sqrt()
    out = torch.empty_like(x)
    np.sqrt(x.numpy(), out=out.numpy())
    return out


class IEEESqrtAdam(torch.optim.Optimizer):
    """`torch.optim.Adam(params, lr, betas, eps)` with `ieee_sqrt` in the denominator."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))
                state["step"] += 1
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                m.lerp_(param.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                denom = (ieee_sqrt(v) / math.sqrt(1 - beta2**t)).add_(group["eps"])
                param.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1**t))
