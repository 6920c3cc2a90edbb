"""SLURM: sbatch job arrays, queued at once; the train phase of cached groups waits with `afterok` on the cache phase
and `--kill-on-invalid-dep`, so a failed cache phase cancels its dependents instead of leaving them pending forever.
Jobs requeue themselves (`--requeue`) on SIGUSR2, `signal_delay_s` before the time limit or at preemption."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import submitit
from submitit.slurm.slurm import SlurmJob

from offdiff.errors import OffdiffError
from offdiff.harness.executors import Executor, Submit

if TYPE_CHECKING:
    from pathlib import Path

    from offdiff.harness.profile import Profile
    from offdiff.harness.record import Submission
    from offdiff.harness.schedule import Array, Job


class SlurmExecutor(Executor):
    name = "slurm"
    waits = False

    def check(self, profile: Profile) -> None:
        if not profile.partition:
            raise OffdiffError(f"{profile.path}: the slurm executor needs `partition:` in the profile "
                               f"(see slurm/profiles/example.yaml), or pick --executor local")

    def make(self, profile: Profile, logs: Path, name: str, after: list[str]) -> submitit.Executor:
        if submitit.SlurmExecutor.affinity() <= 0:
            raise OffdiffError(f"{profile.path}: the slurm executor needs SLURM's commands (srun, sbatch) on PATH; "
                               "submit from a login node, or pick the local executor (slurm/profiles/local.yaml)")
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

    def phases(self, arrays: Sequence[Array]) -> list[list[Array]]:
        """Each array is one sbatch job array (at most `array_limit` jobs)."""
        return [[array] for array in arrays]

    def launch(self, submit: Submit, jobs: Sequence[Job], profile: Profile, tick: Callable[[], None]) -> None:
        submit(jobs)

    def job_states(self, job_ids: Sequence[str]) -> dict[str, str]:
        """One sacct call (submitit's watcher) for all the jobs."""
        for job_id in job_ids:
            SlurmJob.watcher.register_job(job_id)
        SlurmJob.watcher.update()
        return {job_id: SlurmJob.watcher.get_state(job_id, mode="cache") for job_id in job_ids}

    def cancel(self, jobs: Sequence[tuple[Submission, str]]) -> list[str]:
        ids = sorted({job_id for _, job_id in jobs})
        try:
            done = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise OffdiffError("scancel is not on PATH: cancel the grid's SLURM jobs from a login node") from None
        if done.returncode != 0:
            raise OffdiffError(f"scancel failed: {done.stderr.strip() or done.stdout.strip()}")
        return ids
