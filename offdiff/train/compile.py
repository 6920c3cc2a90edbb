"""torch.compile as a run option (`offdiff train --compile`, a grid's `compile: true`), the same for every plugin.

The suite compiles, in place, the plugin's whole `update` (per stage, where `Algorithm.compile_update(stage)`
allows it), its `act` and its `begin_stage` (EDA builds its alignment set there). Dynamo then traces networks,
losses, targets and samplers together, and inductor fuses their elementwise work (Mish, LayerNorm, the
sampler's arithmetic) into a few loops per graph. It splits a step where it must: at `backward`, optimizer
steps, LR schedules and each draw on a plugin's generator run eagerly between graphs, so a compiled run draws
the same random numbers as an eager one. (Samplers draw their noise before their chain, in one eager call, so
that the chain stays one graph.) The two runs differ by float rounding only: fused kernels reorder arithmetic.
A compiled run resumes to float tolerance, not to the bit.

Default ("auto", `compile=None`): on for runs of at least `AUTO_MIN_STEPS` steps, where compiling (about a
minute on 2 CPU cores) is a small part of the run and the compiled step is 1.0–1.7× faster (results/speed), if
the device can compile; off for shorter runs, such as the quickstart's. `True` forces it (an error where it
cannot work), `False` turns it off.

Captured CUDA graphs are not offered. A step is not one static graph: LR schedules write Python floats into the
optimizers, branches depend on the step (EMA warm-up, DTQL-KL's initialisation), each plugin's generators would
have to be registered with the graph, optimizers would need `capturable=True`, and the returned metrics would be
overwritten by the next replay. That needs plugin changes and a GPU to validate them, which this suite lacks.
"""

from __future__ import annotations

import shutil

import torch

from offdiff.algorithm import Algorithm, Metrics
from offdiff.data.buffer import Batch
from offdiff.errors import OffdiffError
from offdiff.lazy import disable_for_compile

RECOMPILE_LIMIT = 64  # stages, step-dependent branches and acting shapes each add a graph
AUTO_MIN_STEPS = 50_000  # compile by default from this many steps of a run (all stages)


def check_compile_available(device: torch.device) -> None:
    """Fail early, with one line, where torch.compile cannot work (inductor on CPU builds C++ with g++)."""
    if device.type == "cpu" and shutil.which("g++") is None:
        raise OffdiffError("--compile on CPU needs a C++ compiler (g++) on PATH for torch.compile's inductor backend")


def resolve_compile(requested: bool | None, device: torch.device, total_steps: int) -> bool:
    """Whether a run compiles: `requested` if given (True is checked), else auto (see the module docstring)."""
    if requested is not None:
        if requested:
            check_compile_available(device)
        return requested
    try:
        check_compile_available(device)
    except OffdiffError:
        return False
    return total_steps >= AUTO_MIN_STEPS


def compile_steps(algo: Algorithm) -> None:
    """Compile `algo.update` (for the stages whose `compile_update` allows it), `act` and `begin_stage`, once.

    Compilation happens lazily, at the first call of each. Dynamo keeps one cache per compiled method across
    instances, so it is reset first (a job trains its runs one after another in one process) and its
    recompile limit is raised to `RECOMPILE_LIMIT` (past the limit it would silently run eagerly).
    """
    if "update" in vars(algo):  # compiled already
        return
    import torch._dynamo  # here, not at the top: it takes seconds to import, and eager runs never need it

    disable_for_compile()  # the functions marked compile_disabled run eagerly under torch.compile
    torch._dynamo.reset()  # one compiled algorithm per process: drop graphs (and cache entries) of earlier ones
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    eager_update, compiled_update = algo.update, torch.compile(algo.update)

    def update(stage: str, batch: Batch, step: int) -> Metrics:
        return (compiled_update if algo.compile_update(stage) else eager_update)(stage, batch, step)

    algo.update = update  # type: ignore[method-assign]
    algo.act = torch.compile(algo.act)  # type: ignore[method-assign]
    algo.begin_stage = torch.compile(algo.begin_stage)  # type: ignore[method-assign]
