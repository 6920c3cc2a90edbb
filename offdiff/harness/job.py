"""The callable that submitit runs in each job: its runs, one after another, each outcome recorded.

Preemption and time limits: SLURM sends SIGUSR2 (at preemption, or `signal_delay_s` before the limit) and
submitit calls `checkpoint`, inherited from `Checkpointable`, which requeues this same job unchanged. Nothing
is saved at the signal: the handler runs wherever the main thread is, possibly between the critic's and the
actor's update or inside a write, so state saved there could be half-updated. The runner's periodic
checkpoints are taken at step boundaries and written atomically; the requeued job skips runs that are DONE
and resumes the others from their last checkpoint bit-exactly, losing at most `checkpoint_every` steps
(`offdiff grid submit` refuses a protocol whose checkpoints are too far apart for the profile's time limit).
"""

from __future__ import annotations

import dataclasses
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import submitit
import torch
from submitit.core.utils import UncompletedJobError

from offdiff.errors import OffdiffError
from offdiff.harness.record import write_outcome
from offdiff.train.run_dir import RunInUse
from offdiff.train.runner import TrainRequest, train


def error_lines(exc: BaseException, keep: int = 6) -> str:
    """One line for a user mistake (OffdiffError); the last lines of the traceback for anything else."""
    if isinstance(exc, OffdiffError):
        return f"{type(exc).__name__}: {exc}"
    lines = "".join(traceback.format_exception(exc)).strip().splitlines()
    return "\n".join(lines[-keep:])


@dataclasses.dataclass
class GridJob(submitit.helpers.Checkpointable):
    """Train `runs` ((key, request) pairs) in order; `cache_only` stops each after its cacheable stages.

    `threads` caps torch's CPU threads at the job's CPUs (many threads on few cores are many times slower).
    With `raise_on_failure` the job fails (SLURM state FAILED, so `afterok` holds back what waits for it)
    when a run failed; the debug executor runs in-process and would open pdb instead, so it records only.
    """

    runs: Sequence[tuple[str, TrainRequest]]
    harness: Path
    cache_only: bool = False
    threads: int = 0
    raise_on_failure: bool = True

    def __call__(self) -> dict[str, str]:
        job_id = submitit.JobEnvironment().job_id
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        states: dict[str, str] = {}
        try:
            for key, request in self.runs:
                states[key] = self._one(job_id, key, request)
        finally:
            torch.set_num_threads(previous)
        bad = {k: s for k, s in states.items() if s in ("failed", "refused")}
        if bad and self.raise_on_failure:
            raise OffdiffError(f"{len(bad)} of {len(states)} runs did not finish ({bad}); "
                               f"see `offdiff grid status` and the log above")
        return states

    def _one(self, job_id: str, key: str, request: TrainRequest) -> str:
        print(f"[offdiff grid] job {job_id}: {'cache phase of ' if self.cache_only else ''}{key}", file=sys.stderr)
        write_outcome(self.harness, job_id, key, "started")  # `grid status`: running, not queued in this job
        try:
            train(request, progress=True, stop_after_cacheable=self.cache_only)
        except UncompletedJobError:  # submitit's own "not requeued" signal: let it end the job
            raise
        except RunInUse as exc:  # another job or `offdiff train` holds the run: leave it alone
            state, error = "refused", error_lines(exc)
        except Exception as exc:  # one run's failure must not stop the job's other runs
            traceback.print_exc()
            state, error = "failed", error_lines(exc)
        else:
            state, error = ("cached" if self.cache_only else "done"), ""
        write_outcome(self.harness, job_id, key, state, error)
        if error:
            print(f"[offdiff grid] {key}: {state}: {error}", file=sys.stderr)
        return state

