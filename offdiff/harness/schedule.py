"""From the runs to submit to jobs and job arrays: the cache phase first, packing, chunking, the estimate.

Runs whose leading cacheable stages share a key (e.g. an EDA beta sweep over one pretrained behavior model)
form a group. A group of two or more runs to submit, none of them finished yet, gets a cache-phase job: its
first run trains only those stages, storing the artifact in `runs/_cache`, and stops checkpointed. The
group's runs (that one included, which resumes) go in train-phase jobs that wait for the cache phase (SLURM
`afterok`), so the stages are trained once per key instead of once per run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from offdiff.algorithm import Stage
from offdiff.config import stable_hash
from offdiff.errors import OffdiffError
from offdiff.harness.grid import Cell
from offdiff.harness.profile import Profile, check_job_shape, threads_per_run
from offdiff.train.runner import PlannedRun


@dataclasses.dataclass(frozen=True)
class Job:
    """Runs packed in one job (`run_steps`: the training steps of each); `phase` "cache" trains only their
    cacheable stages."""

    phase: str
    cells: tuple[Cell, ...]
    run_steps: tuple[int, ...]

    @property
    def steps(self) -> int:
        return sum(self.run_steps)


@dataclasses.dataclass(frozen=True)
class Array:
    """Jobs submitted as one job array; `after_cache` ones start only once every cache-phase job succeeded."""

    phase: str
    after_cache: bool
    jobs: tuple[Job, ...]


@dataclasses.dataclass(frozen=True)
class Schedule:
    arrays: tuple[Array, ...]

    @property
    def jobs(self) -> list[Job]:
        return [job for array in self.arrays for job in array.jobs]

    @property
    def steps(self) -> int:
        return sum(job.steps for job in self.jobs)


def _leading_cacheable(stages: list[Stage]) -> list[Stage]:
    lead = []
    for stage in stages:
        if not stage.cacheable:
            break
        lead.append(stage)
    return lead


def cache_key(p: PlannedRun) -> str | None:
    """What the run's leading cacheable stages depend on: their keys (`PlannedRun.cache_key`, which the runner stores
    their artifacts under); None without such stages."""
    lead = _leading_cacheable(p.stages)
    return stable_hash([p.cache_key(s) for s in lead]) if lead else None


def _pack(phase: str, after_cache: bool, cells: Sequence[Cell], steps: dict[str, int], profile: Profile) -> list[Array]:
    per_job = profile.runs_per_job
    packs = [cells[i:i + per_job] for i in range(0, len(cells), per_job)]
    jobs = [Job(phase, tuple(pack), tuple(steps[c.key] for c in pack)) for pack in packs]
    limit = profile.array_limit
    return [Array(phase, after_cache, tuple(jobs[i:i + limit])) for i in range(0, len(jobs), limit)]


def run_step_hours(profile: Profile) -> float:
    """Hours one step of one run takes while its job trains `concurrency` runs at once (the estimate's rule).

    `gpu_hours_per_step` is one run alone; K runs at once make `concurrent_speedup` times its steps/s together,
    each a K-th of that, also when fewer than K are left (conservative). An unknown speed-up counts as 1.
    """
    return profile.gpu_hours_per_step * profile.concurrency / (profile.concurrent_speedup or 1.0)


def job_hours(job: Job, profile: Profile) -> float:
    """A job's estimated hours: its runs in order, each started on the first of `concurrency` slots to free up."""
    slots = [0.0] * profile.concurrency
    for steps in job.run_steps:
        first = slots.index(min(slots))
        slots[first] += steps * run_step_hours(profile)
    return max(slots)


def _check_checkpoint_cadence(todo: Sequence[Cell], profile: Profile) -> None:
    """A preempted or timed-out job loses the steps since the last checkpoint: they must fit well in a job."""
    if not profile.gpu_hours_per_step:
        return
    every = max(c.planned.protocol.checkpoint_every for c in todo)
    minutes = every * run_step_hours(profile) * 60
    if minutes > profile.time_min / 4:
        at = f" with concurrency={profile.concurrency}" if profile.concurrency > 1 else ""
        raise OffdiffError(
            f"protocol checkpoint_every={every} steps is about {minutes:.0f} min at gpu_hours_per_step="
            f"{profile.gpu_hours_per_step:g}{at}, more than a quarter of time_min={profile.time_min}: a requeued "
            f"job would lose that much work each time; lower protocol.checkpoint_every in the grid"
        )


def make_schedule(todo: Sequence[Cell], cells: Sequence[Cell], profile: Profile) -> Schedule:
    """Jobs and arrays for the runs in `todo` (`cells`: the whole grid, to see which cache keys are done)."""
    stages = {c.key: c.planned.stages for c in cells}
    keys = {c.key: cache_key(c.planned) for c in cells}
    done_keys = {keys[c.key] for c in cells if c.planned.run_dir.is_done()}
    groups: dict[str, list[Cell]] = {}
    for cell in todo:
        if keys[cell.key] is not None and keys[cell.key] not in done_keys:
            groups.setdefault(keys[cell.key], []).append(cell)
    shared = [group for group in groups.values() if len(group) > 1]
    waiting = {c.key for group in shared for c in group}

    total = {c.key: sum(s.steps for s in stages[c.key]) for c in todo}
    cached = {c.key: sum(s.steps for s in _leading_cacheable(stages[c.key])) for c in todo}
    after = {k: total[k] - cached[k] if k in waiting else total[k] for k in total}
    check_job_shape(profile)
    if todo:
        _check_checkpoint_cadence(todo, profile)
    return Schedule(tuple(
        _pack("cache", False, [group[0] for group in shared], cached, profile)
        + _pack("train", False, [c for c in todo if c.key not in waiting], after, profile)
        + _pack("train", True, [c for c in todo if c.key in waiting], after, profile)
    ))


def describe(schedule: Schedule, profile: Profile) -> list[str]:
    """The dry-run lines: jobs and arrays per phase, and the estimated GPU-hours."""
    lines = []
    for array in schedule.arrays:
        runs = sum(len(job.cells) for job in array.jobs)
        wait = ", after the cache phase (afterok)" if array.after_cache else ""
        lines.append(f"  {array.phase}-phase array: {len(array.jobs)} job(s), {runs} run(s){wait}")
    jobs = schedule.jobs
    k = profile.concurrency
    lines.append(f"jobs: {len(jobs)} in {len(schedule.arrays)} array(s) (array_limit={profile.array_limit}, "
                 f"runs_per_job={profile.runs_per_job}, {f'concurrency={k}, ' if k > 1 else ''}"
                 f"executor={profile.executor})")
    if k > 1:
        lines.append(f"each job trains up to {k} runs at once, {threads_per_run(profile)} torch thread(s) each"
                     + (", through CUDA MPS" if profile.cuda_mps else ""))
    if profile.gpu_hours_per_step and jobs:
        hours = sum(job_hours(job, profile) for job in jobs)
        longest = max(job_hours(job, profile) for job in jobs) * 60
        requeues = math.ceil(longest / profile.time_min) - 1
        if k == 1:
            rate = ""
        elif profile.concurrent_speedup:
            rate = f"; {k} runs at once make {profile.concurrent_speedup:g}x one run's steps/s (concurrent_speedup)"
        else:
            rate = (f"; no speed-up from concurrency assumed: set concurrent_speedup from `offdiff bench speed "
                    f"--concurrent {k}`")
        lines.append(f"estimated: {hours:.2f} GPU-hours for {schedule.steps} training steps "
                     f"(gpu_hours_per_step={profile.gpu_hours_per_step:g}{rate}); longest job ≈ {longest:.0f} min"
                     + (f", about {requeues} requeue(s) at time_min={profile.time_min}" if requeues > 0 else ""))
    elif jobs:
        lines.append(f"estimated: {schedule.steps} training steps (set gpu_hours_per_step in the profile "
                     f"for GPU-hours)")
    return lines
