"""The callable that submitit runs in each job: its runs, in turn or `concurrency` at a time, each outcome recorded.

Preemption and time limits: SLURM sends SIGUSR2 (at preemption, or `signal_delay_s` before the limit) and
submitit calls `checkpoint`, inherited from `Checkpointable`, which requeues this same job unchanged. Nothing
is saved at the signal: the handler runs wherever the main thread is, possibly between the critic's and the
actor's update or inside a write, so state saved there could be half-updated. The runner's periodic
checkpoints are taken at step boundaries and written atomically; the requeued job skips runs that are DONE
and resumes the others from their last checkpoint bit-exactly, losing at most `checkpoint_every` steps
(`offdiff grid submit` refuses a protocol whose checkpoints are too far apart for the profile's time limit).

With `concurrency` K > 1 the job trains up to K runs at once, each in its own worker process with its own log
and `threads` torch threads (offdiff/harness/pool.py), on the job's devices (with CUDA MPS if `cuda_mps`).
The workers end with the job, so the requeued job resumes every unfinished run of the job in the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import submitit
import torch
from submitit.core.utils import JobPaths, UncompletedJobError

from offdiff.errors import OffdiffError
from offdiff.harness.mps import cuda_mps
from offdiff.harness.pool import run_concurrently
from offdiff.harness.record import write_outcome
from offdiff.records import RunInUse
from offdiff.train.runner import TrainRequest, train


def error_lines(exc: BaseException, keep: int = 6) -> str:
    """One line for a user mistake (OffdiffError); the last lines of the traceback for anything else."""
    if isinstance(exc, OffdiffError):
        return f"{type(exc).__name__}: {exc}"
    lines = "".join(traceback.format_exception(exc)).strip().splitlines()
    return "\n".join(lines[-keep:])


def train_one(request: TrainRequest, cache_only: bool) -> tuple[str, str]:
    """Train (or resume) one run of a job; its outcome: state (done, cached, failed, refused) and error lines."""
    try:
        train(request, progress=True, stop_after_cacheable=cache_only)
    except UncompletedJobError:  # submitit's own "not requeued" signal: let it end the job
        raise
    except RunInUse as exc:  # another job or `offdiff train` holds the run: leave it alone
        return "refused", error_lines(exc)
    except Exception as exc:  # one run's failure must not stop the job's other runs
        traceback.print_exc()
        return "failed", error_lines(exc)
    return ("cached" if cache_only else "done"), ""


@dataclasses.dataclass
class GridJob(submitit.helpers.Checkpointable):
    """Train `runs` ((key, request) pairs), in order or `concurrency` at a time; `cache_only` stops each after its
    cacheable stages. `logs` is submitit's log folder (`%j`: the job id), where concurrent runs log.

    `threads` caps torch's CPU threads per run (many threads on few cores are many times slower).
    With `raise_on_failure` the job fails (SLURM state FAILED, so `afterok` holds back what waits for it)
    when a run failed; the debug executor runs in-process and would open pdb instead, so it records only.
    """

    runs: Sequence[tuple[str, TrainRequest]]
    harness: Path
    logs: Path
    cache_only: bool = False
    threads: int = 0
    raise_on_failure: bool = True
    concurrency: int = 1
    cuda_mps: bool = False

    def __call__(self) -> dict[str, str]:
        job_id = submitit.JobEnvironment().job_id
        states = self._concurrently(job_id) if self.concurrency > 1 else self._in_turn(job_id)
        bad = {k: s for k, s in states.items() if s in ("failed", "refused")}
        if bad and self.raise_on_failure:
            raise OffdiffError(f"{len(bad)} of {len(states)} runs did not finish ({bad}); "
                               f"see `offdiff grid status` and the log above")
        return states

    def _in_turn(self, job_id: str) -> dict[str, str]:
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        states: dict[str, str] = {}
        try:
            for key, request in self.runs:
                print(f"[offdiff grid] job {job_id}: {'cache phase of ' if self.cache_only else ''}{key}",
                      file=sys.stderr)
                self._record(job_id, key, "started", "")  # `grid status`: running, not queued in this job
                states[key] = self._record(job_id, key, *train_one(request, self.cache_only))
        finally:
            torch.set_num_threads(previous)
        return states

    def _concurrently(self, job_id: str) -> dict[str, str]:
        folder = JobPaths(self.logs, job_id).folder
        with cuda_mps(folder) if self.cuda_mps else contextlib.nullcontext({}) as env:
            return run_concurrently(self.runs, self.concurrency, self.threads, folder, job_id, self.cache_only,
                                    lambda key, state, error: self._record(job_id, key, state, error), env)

    def _record(self, job_id: str, key: str, state: str, error: str) -> str:
        write_outcome(self.harness, job_id, key, state, error)
        if error:
            print(f"[offdiff grid] {key}: {state}: {error}", file=sys.stderr)
        return state
