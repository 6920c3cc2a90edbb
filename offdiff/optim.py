"""Optimisation helpers shared by the plugins: LR schedules and a clipped optimizer step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


def cosine_decay(total_steps: int) -> Callable[[int], float]:
    """LR factor that anneals from 1 to 0 over `total_steps` optimizer steps (CosineAnnealingLR per step)."""
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Iterable[torch.nn.Parameter] | None = None,
    max_grad_norm: float = 0.0,
) -> None:
    """zero_grad, backward, optional gradient-norm clipping (no host sync), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm > 0:
        assert params is not None, "clipping needs the parameters"
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
    optimizer.step()
