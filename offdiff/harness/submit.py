"""`offdiff grid submit` / `resubmit`: expand the grid, drop finished and queued runs, schedule, submit.

SLURM: the arrays are submitted at once (the train phase of cached groups with `afterok` on the cache phase
and `--kill-on-invalid-dep`, so a failed cache phase cancels its dependents instead of leaving them pending
forever) and the command returns. local/debug: the phases run in order, each awaited, and the train phase
of cached groups starts only if every cache-phase job succeeded: the same rule, kept by waiting. The local
executor keeps `array_limit` jobs running and starts the next job of a phase as soon as one ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import submitit
from submitit.core.utils import FailedJobError
from tqdm import tqdm

from offdiff.errors import OffdiffError
from offdiff.harness.grid import Cell, Grid, expand
from offdiff.harness.job import GridJob
from offdiff.harness.profile import Profile, threads_per_run
from offdiff.harness.record import JobEntry, Record, harness_dir, read_outcomes, submitting
from offdiff.harness.schedule import Array, Job, describe, make_schedule
from offdiff.harness.status import counts, report, run_states
from offdiff.io import writing


def make_executor(profile: Profile, logs: Path, name: str, after: list[str]) -> submitit.Executor:
    """The submitit executor the profile names (never auto-detected: that picks SLURM whenever srun exists)."""
    if profile.executor == "debug":
        return submitit.DebugExecutor(logs)
    if profile.executor == "local":
        executor = submitit.LocalExecutor(logs, max_num_timeout=profile.max_requeues)
        executor.update_parameters(timeout_min=profile.time_min, gpus_per_node=profile.gpus,
                                   signal_delay_s=profile.signal_delay_s, setup=list(profile.setup))
        return executor
    if submitit.SlurmExecutor.affinity() <= 0:
        raise OffdiffError(f"{profile.path}: the slurm executor needs SLURM's commands (srun, sbatch) on PATH; submit "
                           "from a login node, or pick the local executor (slurm/profiles/local.yaml)")
    executor = submitit.SlurmExecutor(logs, max_num_timeout=profile.max_requeues)
    optional = {k: getattr(profile, k) for k in ("account", "qos", "constraint") if getattr(profile, k)}
    if profile.gpus:
        optional["gpus_per_node"] = profile.gpus
    extra: dict[str, str | bool] = {"requeue": True, **profile.sbatch}
    if after:
        optional["dependency"] = "afterok:" + ":".join(sorted({job_id.split("_")[0] for job_id in after}))
        extra["kill-on-invalid-dep"] = "yes"
    executor.update_parameters(
        job_name=name, partition=profile.partition, time=profile.time_min, cpus_per_task=profile.cpus,
        mem=f"{math.ceil(profile.mem_gb * 1024)}M", signal_delay_s=profile.signal_delay_s,
        array_parallelism=profile.array_parallelism, setup=list(profile.setup), additional_parameters=extra,
        **optional,
    )
    return executor


@contextlib.contextmanager
def _one_line_errors(profile: Profile, folder: Path) -> Iterator[None]:
    """A failed submission (sbatch cannot reach the controller, a full disk) is one line, sbatch's own message in it.

    Local job controllers are started here and inherit this process's stderr: it goes to `folder`/controllers.log,
    so that a Ctrl-C, which reaches them too, does not print their KeyboardInterrupt tracebacks on the terminal.
    """
    said = io.StringIO()
    with writing(folder / "controllers.log"):
        folder.mkdir(parents=True, exist_ok=True)
        log = open(folder / "controllers.log", "ab")  # noqa: SIM115 - closed below
    sys.stderr.flush()
    try:
        with log, contextlib.redirect_stderr(said), writing(folder):
            saved = os.dup(2)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    except FailedJobError as exc:
        lines = [line for line in f"{exc}\n{said.getvalue()}".splitlines() if line.strip()]
        raise OffdiffError(f"{profile.executor} submission failed: {lines[0] if lines else 'no message'}") from None
    sys.stderr.write(said.getvalue())


def _cache_failed(folder: Path, cache_jobs: list[str]) -> list[str]:
    """Cache-phase jobs (local/debug, all finished) that did not cache every one of their runs."""
    bad = []
    for job_id in cache_jobs:
        outcomes = read_outcomes(folder, job_id)
        if not outcomes or any(o["state"] != "cached" for o in outcomes.values()):
            bad.append(job_id)
    return bad


def _local_window(submit_one: Callable[[Job], submitit.Job], jobs: Sequence[Job], limit: int, cells: Sequence[Cell],
                  bar: tqdm) -> None:
    """Run local jobs `limit` at a time, starting the next as soon as one ends (no core idles at an array's end);
    the progress bar advances as the grid's runs finish (their DONE markers)."""
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < limit:
            running.append(submit_one(pending.pop(0)))
        time.sleep(1.0)
        running = [j for j in running if not j.done()]
        bar.update(sum(c.planned.run_dir.is_done() for c in cells) - bar.n)


def _phases(arrays: tuple[Array, ...]) -> list[list[Array]]:
    """Consecutive arrays of the same phase: on this machine (local/debug) each such group runs as one queue."""
    groups: list[list[Array]] = []
    for array in arrays:
        if groups and (groups[-1][0].phase, groups[-1][0].after_cache) == (array.phase, array.after_cache):
            groups[-1].append(array)
        else:
            groups.append([array])
    return groups


def _launch(grid: Grid, arrays: tuple[Array, ...], profile: Profile, folder: Path, todo: Sequence[Cell]) -> None:
    bar = tqdm(total=len(todo), desc=f"grid {grid.name}", unit="run",
               disable=profile.executor != "local" or not sys.stderr.isatty())
    record = Record(folder)
    logs = folder / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" / "%j"
    submission = record.start(profile.executor, profile.path, logs)
    record.save()  # a full disk or read-only folder fails here, before any job is submitted
    cache_jobs: list[str] = []
    groups = [[a] for a in arrays] if profile.executor == "slurm" else _phases(arrays)
    for group in groups:
        phase, after = group[0].phase, cache_jobs if group[0].after_cache else []
        failed = _cache_failed(folder, after) if profile.executor != "slurm" else []
        if failed:
            print(f"not started: {sum(len(j.cells) for a in group for j in a.jobs)} run(s) waiting on failed "
                  f"cache-phase job(s) {', '.join(failed)}")
            continue
        executor = make_executor(profile, logs, f"offdiff-{grid.name}-{phase}", after)

        def submit_jobs(jobs: Sequence[Job], executor: submitit.Executor = executor, phase: str = phase,
                        after: list[str] = after) -> list[submitit.Job]:
            with _one_line_errors(profile, logs.parent), executor.batch():
                submitted = [executor.submit(GridJob(
                    runs=[(c.key, dataclasses.replace(c.planned.request, device=profile.device)) for c in job.cells],
                    harness=folder, logs=logs, cache_only=phase == "cache", threads=threads_per_run(profile),
                    raise_on_failure=profile.executor != "debug", concurrency=profile.concurrency,
                    cuda_mps=profile.cuda_mps,
                )) for job in jobs]
            submission.jobs.extend(JobEntry(j.job_id, phase, [c.key for c in job.cells], list(after))
                                   for j, job in zip(submitted, jobs, strict=True))
            record.save()  # after every submission: a later failure must not hide jobs already queued
            what = "job" if profile.executor == "local" else "array: jobs"  # local jobs start one at a time
            print(f"submitted {phase}-phase {what} {', '.join(j.job_id for j in submitted)}")
            if phase == "cache":
                cache_jobs.extend(j.job_id for j in submitted)
            return submitted

        if profile.executor == "local":
            _local_window(lambda job: submit_jobs([job])[0], [j for a in group for j in a.jobs], profile.array_limit,
                          todo, bar)
            continue
        submitted = submit_jobs([j for a in group for j in a.jobs])
        if profile.executor == "debug":
            for j in submitted:
                j.wait()
    bar.close()


def submit(grid: Grid, profile: Profile, runs_root: Path, only_failed: bool = False, dry_run: bool = False,
           quiet: bool = False) -> int:
    """Submit the grid's runs that are not done and not queued (`only_failed`: just the failed ones).

    Returns the exit status: 1 if runs failed in a local/debug submission (which waits for them), else 0.
    """
    runs_root = Path(runs_root).resolve()
    cells = expand(grid, runs_root)
    folder = harness_dir(runs_root, grid.name)
    with contextlib.nullcontext() if dry_run else submitting(folder):
        statuses = run_states(cells, folder)
        wanted = ("failed",) if only_failed else ("failed", "not submitted")
        todo = [s.cell for s in statuses if s.state in wanted]
        print(f"grid {grid.name}: {len(cells)} runs ({counts(statuses)}); to submit: {len(todo)} "
              f"({' or '.join(wanted)})")
        if not todo:
            print("nothing to submit")
            return 0
        schedule = make_schedule(todo, cells, profile)
        print("\n".join(describe(schedule, profile)))
        if dry_run:
            if not quiet:  # one line per run
                print("\n".join(f"  {c.label}  {c.planned.run_dir.path}" for c in todo))
            return 0
        _launch(grid, schedule.arrays, profile, folder, todo)
        if profile.executor == "slurm":
            print(f"follow with: offdiff grid status {grid.path} --runs-dir {runs_root}")
            return 0
        statuses = run_states(cells, folder)
        print("\n".join(report(statuses, folder.parent)))
        return int(any(s.state == "failed" for s in statuses))
