"""Target networks, EMA copies and frozen use. An EMA with decay d is `polyak_update_` with τ = 1 − d."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn


@torch.no_grad()
def polyak_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ_target ← (1 − τ)·θ_target + τ·θ_source for every parameter; buffers are copied."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
    _copy_buffers_(target, source)


@torch.no_grad()
def hard_update_(target: nn.Module, source: nn.Module) -> None:
    """θ_target ← θ_source for every parameter and buffer."""
    torch._foreach_copy_(list(target.parameters()), list(source.parameters()))
    _copy_buffers_(target, source)


def _copy_buffers_(target: nn.Module, source: nn.Module) -> None:
    buffers = list(target.buffers())
    if buffers:
        torch._foreach_copy_(buffers, list(source.buffers()))


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` whose parameters do not require grad (a target network)."""
    return copy.deepcopy(module).requires_grad_(False)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Use `module` without gradients to its parameters (they still flow to its inputs); flags restored after."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for param, flag in zip(module.parameters(), flags, strict=True):
            param.requires_grad_(flag)
