"""This machine: `local` runs each job as a subprocess, `array_limit` at a time; `debug` runs them in this process
(errors open pdb). `grid submit` waits for each phase, and starts the train phase of cached groups only if every
cache-phase job succeeded: the rule SLURM keeps with `afterok`, kept by waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import submitit

from offdiff.harness.executors import Executor, Submit

if TYPE_CHECKING:
    from offdiff.harness.profile import Profile
    from offdiff.harness.record import Submission
    from offdiff.harness.schedule import Job


class LocalExecutor(Executor):
    name = "local"
    progress_bar = True
    submitted_as = "job"  # local jobs start one at a time

    def make(self, profile: Profile, logs: Path, name: str, after: list[str]) -> submitit.Executor:
        executor = submitit.LocalExecutor(logs, max_num_timeout=profile.max_requeues)
        executor.update_parameters(timeout_min=profile.time_min, gpus_per_node=profile.gpus,
                                   signal_delay_s=profile.signal_delay_s, setup=list(profile.setup))
        return executor

    def launch(self, submit: Submit, jobs: Sequence[Job], profile: Profile, tick: Callable[[], None]) -> None:
        """Run the jobs `array_limit` at a time, starting the next as soon as one ends (no core idles at an array's
        end); `tick` every second."""
        take_back_sigint()
        pending, running = list(jobs), []
        while pending or running:
            while pending and len(running) < profile.array_limit:
                running += submit([pending.pop(0)])
            time.sleep(1.0)
            running = [j for j in running if not j.done()]
            tick()

    def job_states(self, job_ids: Sequence[str]) -> dict[str, str]:
        """A local job id is its process id: RUNNING while that process lives."""
        return {job_id: "RUNNING" if _alive(job_id) else "ENDED" for job_id in job_ids}

    def cancel(self, jobs: Sequence[tuple[Submission, str]]) -> list[str]:
        """Stop the `grid submit` that is starting the jobs, then the jobs (SIGINT to both, as Ctrl-C: submitit's
        local job then stops its worker)."""
        ids = sorted({job_id for _, job_id in jobs})
        submitters = {Path(sub.logs).parent.name.rsplit("-", 1)[-1] for sub, _ in jobs}
        for pid, marker in [*((p, b"grid") for p in submitters), *((j, b"submitit") for j in ids)]:
            if _is_process(pid, marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGINT)
        return ids


class DebugExecutor(Executor):
    name = "debug"
    raise_on_failure = False  # the job runs in this process: a raised failure would open pdb

    def make(self, profile: Profile, logs: Path, name: str, after: list[str]) -> submitit.Executor:
        return submitit.DebugExecutor(logs)


def take_back_sigint() -> None:
    """Handle SIGINT (Ctrl-C, `grid cancel`) even where it was inherited ignored: a shell starts background jobs
    (`nohup offdiff grid submit ... &`) with SIGINT ignored, and the jobs would inherit that. With a handler here,
    the jobs started from now on get SIGINT's default, which Python turns into KeyboardInterrupt again."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    try:  # an ended job whose parent (its `grid submit`) is gone may linger as a zombie: not alive
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_process(pid: str, marker: bytes) -> bool:
    """Whether `pid` is still the process it was (its command line names `marker`), not a reused pid."""
    try:
        return marker in Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
