"""`offdiff grid submit` / `resubmit`: expand the grid, drop finished and queued runs, schedule, submit.

The profile's executor (offdiff/harness/executors/) builds each phase's submitit executor and launches its jobs.
One that queues them on a scheduler (SLURM) gets them all at once, the train phase of cached groups depending on
the cache phase, and the command returns. One that waits (local, debug) runs the phases in order, and starts the
train phase of cached groups only if every cache-phase job succeeded: the same rule, kept by waiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import submitit
from submitit.core.utils import FailedJobError
from tqdm import tqdm

from offdiff.errors import OffdiffError
from offdiff.harness.executors import get_executor
from offdiff.harness.grid import Cell, Grid, expand
from offdiff.harness.job import GridJob
from offdiff.harness.profile import Profile, threads_per_run
from offdiff.harness.record import JobEntry, Record, harness_dir, read_outcomes, submitting
from offdiff.harness.schedule import Array, Job, describe, make_schedule
from offdiff.harness.status import counts, report, run_states
from offdiff.io import writing


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


def _launch(grid: Grid, arrays: tuple[Array, ...], profile: Profile, folder: Path, todo: Sequence[Cell]) -> None:
    backend = get_executor(profile.executor)
    bar = tqdm(total=len(todo), desc=f"grid {grid.name}", unit="run",
               disable=not backend.progress_bar or not sys.stderr.isatty())
    record = Record(folder)
    logs = folder / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" / "%j"
    submission = record.start(profile.executor, profile.path, logs)
    record.save()  # a full disk or read-only folder fails here, before any job is submitted
    cache_jobs: list[str] = []
    for group in backend.phases(arrays):
        phase, after = group[0].phase, cache_jobs if group[0].after_cache else []
        failed = _cache_failed(folder, after) if backend.waits else []
        if failed:
            print(f"not started: {sum(len(j.cells) for a in group for j in a.jobs)} run(s) waiting on failed "
                  f"cache-phase job(s) {', '.join(failed)}")
            continue
        executor = backend.make(profile, logs, f"offdiff-{grid.name}-{phase}", after)

        def submit_jobs(jobs: Sequence[Job], executor: submitit.Executor = executor, phase: str = phase,
                        after: list[str] = after) -> list[submitit.Job]:
            with _one_line_errors(profile, logs.parent), executor.batch():
                submitted = [executor.submit(GridJob(
                    runs=[(c.key, dataclasses.replace(c.planned.request, device=profile.device)) for c in job.cells],
                    harness=folder, logs=logs, cache_only=phase == "cache", threads=threads_per_run(profile),
                    raise_on_failure=backend.raise_on_failure, concurrency=profile.concurrency,
                    cuda_mps=profile.cuda_mps,
                )) for job in jobs]
            submission.jobs.extend(JobEntry(j.job_id, phase, [c.key for c in job.cells], list(after))
                                   for j, job in zip(submitted, jobs, strict=True))
            record.save()  # after every submission: a later failure must not hide jobs already queued
            print(f"submitted {phase}-phase {backend.submitted_as} {', '.join(j.job_id for j in submitted)}")
            if phase == "cache":
                cache_jobs.extend(j.job_id for j in submitted)
            return submitted

        backend.launch(submit_jobs, [j for a in group for j in a.jobs], profile,
                       lambda: bar.update(sum(c.planned.run_dir.is_done() for c in todo) - bar.n))
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
        if not get_executor(profile.executor).waits:
            print(f"follow with: offdiff grid status {grid.path} --runs-dir {runs_root}")
            return 0
        statuses = run_states(cells, folder)
        print("\n".join(report(statuses, folder.parent)))
        return int(any(s.state == "failed" for s in statuses))
