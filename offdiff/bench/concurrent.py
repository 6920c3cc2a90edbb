"""`offdiff bench speed --concurrent K`: aggregate training steps/s of K training loops that share one device.

Each loop is its own process, as a job with `concurrency: K` trains its runs: the algorithm built as the speed
benchmark builds it (papers' settings, random data on the device, the same mode) with its own torch threads.
The K loops take each training stage together: after the warm-up, a barrier starts every repeat, each loop
steps for about `repeat_s` seconds (synchronizing the device after every chunk of about a twentieth of that, so
a step counts once it has run), and the repeat's figure is the sum of the K loops' steps/s. A figure is the
median over repeats. One loop (K = 1) is always measured the same way, in its own process: the speed-up of K
loops is their aggregate over its figure. Peak memory is the sum over the loops (RSS on CPU, max allocated on
CUDA). A K whose loops fail (e.g. out of device memory) is reported as a failure; the other Ks still run.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import queue
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from offdiff.bench.speed import AlgorithmBench, Budget, Measured
from offdiff.train.compile import compile_steps

BARRIER_TIMEOUT_S = 600.0  # a loop that waits longer for the others: one of them died


@dataclasses.dataclass(frozen=True)
class LoopStage:
    """What one loop measured in one stage: steps/s per repeat, warm-up seconds, peak memory (MiB)."""

    stage: str
    batch: int
    rates: list[float]
    warmup_s: float
    peak_mb: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_repeats(step: Callable[[], None], budget: Budget, device: torch.device, barrier: Any) -> list[float]:
    """Steps/s of each repeat; each starts when every loop reaches the barrier."""
    start = time.perf_counter()
    step()
    _sync(device)
    per_step = time.perf_counter() - start
    chunk_s = budget.repeat_s / 20
    rates = []
    for _ in range(budget.repeats):
        barrier.wait(BARRIER_TIMEOUT_S)
        steps, start = 0, time.perf_counter()
        while True:
            chunk = max(1, math.ceil(chunk_s / max(per_step, 1e-6)))
            for _ in range(chunk):
                step()
            _sync(device)
            steps += chunk
            elapsed = time.perf_counter() - start
            per_step = elapsed / steps
            if elapsed >= budget.repeat_s:
                break
        rates.append(steps / elapsed)
    return rates


def _loop(index: int, name: str, mode: str, device_name: str, budget: Budget, threads: int, barrier: Any,
          results: Any) -> None:
    """One training loop (a spawned process): every stage of `name`, timed with the other loops."""
    try:
        from offdiff.runtime import keep_freed_memory

        torch.set_num_threads(threads)
        keep_freed_memory()  # as `offdiff train` does
        device = torch.device(device_name)
        bench = AlgorithmBench(name, mode, device, budget)
        if mode == "compile":
            compile_steps(bench.algo)
        measured = []
        for stage in bench.algo.stages():
            data = bench.stage_data(stage)
            bench.algo.begin_stage(stage.name, data)
            step = bench.stepper(stage, data)
            bench.peak.reset()
            start = time.perf_counter()
            for _ in range(budget.warmup):
                step()
            _sync(device)
            warmup_s = time.perf_counter() - start
            rates = _timed_repeats(step, budget, device, barrier)
            measured.append(LoopStage(stage.name, stage.batch_size, rates, warmup_s, bench.peak.read()))
        results.put((index, measured))
    except Exception as exc:  # reported to the parent, which names the loop
        barrier.abort()  # the other loops stop waiting for this one
        results.put((index, "".join(traceback.format_exception_only(exc)).strip()))


def _run_loops(name: str, mode: str, device: torch.device, budget: Budget, loops: int, threads: int
               ) -> list[list[LoopStage]]:
    context = multiprocessing.get_context("spawn")  # fresh processes: no inherited torch or CUDA state
    barrier, results = context.Barrier(loops), context.Queue()
    processes = [context.Process(target=_loop, args=(i, name, mode, str(device), budget, threads, barrier, results))
                 for i in range(loops)]
    for process in processes:
        process.start()
    found: dict[int, list[LoopStage] | str] = {}
    try:
        while len(found) < loops:
            try:
                index, measured = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead and results.empty():
                    found.update({i: f"exited with status {p.exitcode}" for i, p in enumerate(processes)
                                  if p.exitcode not in (None, 0) and i not in found})
                    barrier.abort()
                continue
            found[index] = measured
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    errors = [f"loop {i}: {m}" for i, m in sorted(found.items()) if isinstance(m, str)]
    if errors:
        raise RuntimeError("; ".join(errors))
    return [found[i] for i in range(loops)]  # type: ignore[misc]


def _aggregate(name: str, mode: str, threads: int, per_loop: list[list[LoopStage]]) -> list[Measured]:
    """One figure per stage: the loops' steps/s summed per repeat, the median over repeats."""
    figures = []
    for stages in zip(*per_loop, strict=True):
        totals = [sum(rates) for rates in zip(*(s.rates for s in stages), strict=True)]
        first = stages[0]
        figures.append(Measured(
            name, mode, "concurrent", first.stage, "steps/s", statistics.median(totals), totals,
            max(s.warmup_s for s in stages), sum(s.peak_mb for s in stages),
            {"batch": first.batch, "loops": len(stages), "threads": threads}))
    return figures


def run_concurrent(algos: list[str], modes: list[str], device: torch.device, budget: Budget, loops: list[int],
                   threads: Callable[[int], int], progress: Callable[[str], None] | None = None
                   ) -> tuple[list[Measured], list[str]]:
    """Every (algorithm, mode, K) in turn; `threads(K)` is each loop's torch threads. Returns the figures and the
    failures (one line each)."""
    figures, failures = [], []
    for name in algos:
        for mode in modes:
            for k in loops:
                if progress:
                    progress(f"{name} [{mode}] {k} loop(s) at once, {threads(k)} thread(s) each")
                try:
                    figures.extend(_aggregate(name, mode, threads(k), _run_loops(name, mode, device, budget, k,
                                                                                 threads(k))))
                except RuntimeError as exc:
                    failures.append(f"{name} [{mode}] {k} loops: {exc}")
    return figures, failures
