"""The speed benchmark: per algorithm and mode, gradient steps/s of every stage, actions/s at evaluation, EDA's
alignment-set generation in states/s, and peak memory, at the papers' settings.

Settings: the algorithm's defaults and its halfcheetah-medium preset (obs 17, act 6; batch 256 for Diffusion-QL
and DTQL, 2048 for EDA's behavior model, 256 states × 16 candidates for EDA's alignment), on random data that
already lives on the device. A training step is what the stage runner does: sample a batch, one `update`.
Acting is one `act` call on that many states (one per env), under no_grad as in evaluation. Every figure is the
median over repeats after a warm-up (where compilation happens); each repeat lasts about `repeat_s` seconds.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from offdiff.algorithm import Algorithm, EnvSpec, Stage
from offdiff.bench.machine import PeakMemory
from offdiff.config import apply_overrides
from offdiff.data.buffer import DeviceBuffer
from offdiff.data.transitions import random_transitions
from offdiff.registry import get_algorithm
from offdiff.train.compile import compile_steps

TASK, OBS_DIM, ACT_DIM = "halfcheetah-medium", 17, 6
ENVS = (1, 10, 20)


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long to measure: warm-up calls, repeats of about `repeat_s` seconds, sizes of the random data."""

    warmup: int = 3
    repeats: int = 5
    repeat_s: float = 1.0
    rows: int = 10_000
    set_states: int = 128


FULL = Budget()
QUICK = Budget(warmup=0, repeats=1, repeat_s=0.0, rows=256, set_states=4)


@dataclasses.dataclass
class Measured:
    """One figure: the median of `repeats` rates in `unit`, with the warm-up time and the peak memory."""

    algo: str
    mode: str
    measure: str  # "train", "act" or "alignment_set"
    label: str  # stage name, "N envs" or "N states"
    unit: str
    value: float
    repeats: list[float]
    warmup_s: float
    peak_memory_mb: float
    size: dict[str, int]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rates(call: Callable[[], Any], items_per_call: int, budget: Budget, device: torch.device
           ) -> tuple[list[float], float]:
    """Warm up, then time repeats of back-to-back calls; returns (items/s per repeat, warm-up seconds)."""
    start = time.perf_counter()
    for _ in range(budget.warmup):
        call()
    _sync(device)
    warmup_s = time.perf_counter() - start
    per_call = warmup_s / max(budget.warmup, 1)  # includes compilation: a conservative guess, refined below
    rates = []
    for _ in range(budget.repeats):
        calls = max(1, math.ceil(budget.repeat_s / max(per_call, 1e-6)))
        start = time.perf_counter()
        for _ in range(calls):
            call()
        _sync(device)
        seconds = time.perf_counter() - start
        per_call = seconds / calls
        rates.append(items_per_call * calls / seconds)
    return rates, warmup_s


class AlgorithmBench:
    """One algorithm built at the papers' settings on random data, measured in one mode ("eager" or "compile")."""

    def __init__(self, name: str, mode: str, device: torch.device, budget: Budget):
        self.name, self.mode, self.device, self.budget = name, mode, device, budget
        cls = get_algorithm(name)
        config = apply_overrides(cls.Config(), cls.preset(TASK), origin=f"{name} preset for {TASK}")
        torch.manual_seed(0)
        spec = EnvSpec(OBS_DIM, ACT_DIM, "bench/random-halfcheetah-v0", TASK)
        self.algo: Algorithm = cls(config, spec, device, torch.Generator(device).manual_seed(0))
        self.data = DeviceBuffer(random_transitions(budget.rows, OBS_DIM, ACT_DIM), device)
        self.sampler = torch.Generator(device).manual_seed(1)
        self.peak = PeakMemory(device)
        self.step = 0

    def _measure(self, measure: str, label: str, unit: str, call: Callable[[], Any], items: int,
                 size: dict[str, int]) -> Measured:
        self.peak.reset()
        rates, warmup_s = _rates(call, items, self.budget, self.device)
        return Measured(self.name, self.mode, measure, label, unit, statistics.median(rates), rates, warmup_s,
                        self.peak.read(), size)

    def stage_data(self, stage: Stage) -> DeviceBuffer:
        """The data a stage trains on: all of it, or for a candidate-set stage the `set_states` first rows."""
        if stage.candidate_set:
            return self.data.subset(torch.arange(self.budget.set_states, device=self.device))
        return self.data

    def stepper(self, stage: Stage, data: DeviceBuffer) -> Callable[[], None]:
        """One training step of `stage` per call, as the runner takes it; steps count from 0 per stage."""
        self.step = 0

        def one_step() -> None:
            self.algo.update(stage.name, data.sample(stage.batch_size, self.sampler), self.step)
            self.step += 1

        return one_step

    def run(self) -> list[Measured]:
        results = []
        if self.mode == "compile":
            compile_steps(self.algo)
        for stage in self.algo.stages():
            data = self.stage_data(stage)
            if stage.candidate_set:  # its begin_stage is timed, in states/s
                results.append(self._measure(
                    "alignment_set", f"{len(data)} states", "states/s",
                    lambda data=data, stage=stage: self.algo.begin_stage(stage.name, data), len(data),
                    {"states": len(data)}))
            else:
                self.algo.begin_stage(stage.name, data)
            results.append(self._train(stage, data))
        for envs in ENVS:
            obs = torch.randn(envs, OBS_DIM, device=self.device, generator=torch.Generator(self.device).manual_seed(2))
            results.append(self._measure("act", f"{envs} envs", "actions/s", lambda obs=obs: self._act(obs), envs,
                                         {"envs": envs}))
        return results

    def _train(self, stage: Stage, data: DeviceBuffer) -> Measured:
        return self._measure("train", stage.name, "steps/s", self.stepper(stage, data), 1,
                             {"batch": stage.batch_size})

    @torch.no_grad()
    def _act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.algo.act(obs)


def run_speed(algos: list[str], modes: list[str], device: torch.device, budget: Budget,
              progress: Callable[[str], None] | None = None) -> list[Measured]:
    """Every (algorithm, mode) in turn, each on a freshly built algorithm."""
    results = []
    for name in algos:
        for mode in modes:
            if progress:
                progress(f"{name} [{mode}]")
            results.extend(AlgorithmBench(name, mode, device, budget).run())
    return results
