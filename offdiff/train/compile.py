"""torch.compile as a run option (`offdiff train --compile`), the same mechanism for every algorithm.

The suite compiles, in place, the networks a plugin lists in `Algorithm.compilable(stage)` (`nn.Module.compile`,
so state-dict keys and checkpoints do not change). Everything else stays eager: the sampler, the plugin's random
draws on its generators, losses, optimizers, schedules and target updates. So a compiled run draws the same
random numbers as an eager one, and the two differ only by float rounding (fused kernels reorder the
arithmetic). A compiled run resumes to float tolerance, not to the bit: which graphs Dynamo holds (static or
dynamic shapes) depends on the calls it has seen. Hence off by default, on CPU and CUDA alike; a grid turns it on
for all its runs with `compile: true`.

Captured CUDA graphs are not offered. A step is not one static graph: LR schedules write Python floats into the
optimizers, branches depend on the step (EMA warm-up, DTQL-KL's initialisation), each plugin's generators would
have to be registered with the graph, optimizers would need `capturable=True`, and the returned metrics would be
overwritten by the next replay. That needs plugin changes and a GPU to validate them, which this suite lacks.
"""

from __future__ import annotations

import shutil

import torch
import torch._dynamo

from offdiff.algorithm import Algorithm
from offdiff.errors import OffdiffError

RECOMPILE_LIMIT = 64  # shapes (envs × candidates, chunks), grad modes and frozen flags each add a graph per class


def check_compile_available(device: torch.device) -> None:
    """Fail early, with one line, where torch.compile cannot work (inductor on CPU builds C++ with g++)."""
    if device.type == "cpu" and shutil.which("g++") is None:
        raise OffdiffError("--compile on CPU needs a C++ compiler (g++) on PATH for torch.compile's inductor backend")


def compile_networks(algo: Algorithm, stage: str) -> list[str]:
    """Compile each network `algo.compilable(stage)` lists that is not compiled yet; return their names.

    Compilation itself happens lazily, at a network's first call. Dynamo keeps one cache per network class, so
    its recompile limit is raised to `RECOMPILE_LIMIT` (past the limit it would silently run eagerly).
    """
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    compiled = []
    for name, net in algo.compilable(stage).items():
        if type(net).forward.__module__.startswith("torch."):
            raise TypeError(f"{type(algo).__name__}.compilable lists {name!r}, a {type(net).__name__}: torch.compile "
                            "skips torch's own modules called alone; list a network with its own forward")
        if net._compiled_call_impl is None:
            net.compile()
        compiled.append(name)
    return compiled
