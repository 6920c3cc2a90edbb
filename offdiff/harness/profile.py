"""Cluster profiles (`slurm/profiles/*.yaml`): where and how a grid's jobs run. Every key is documented in
`slurm/profiles/example.yaml`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from offdiff.errors import OffdiffError
from offdiff.harness.executors import get_executor
from offdiff.harness.yamlspec import Located, LocatedList, check_keys, expect, load_yaml, typed_fields


@dataclasses.dataclass(frozen=True)
class Profile:
    """One cluster (or this machine). Empty strings mean "not set"; `gpu_hours_per_step` and
    `concurrent_speedup` 0 mean unknown."""

    executor: str = "slurm"  # a name in offdiff/harness/executors/
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    gpus: int = 1
    cpus: int = 4
    mem_gb: float = 16.0
    time_min: int = 240
    signal_delay_s: int = 120
    max_requeues: int = 20
    array_limit: int = 1000
    array_parallelism: int = 64
    runs_per_job: int = 1
    concurrency: int = 1
    cuda_mps: bool = False
    gpu_hours_per_step: float = 0.0
    concurrent_speedup: float = 0.0
    device: str = "auto"
    setup: tuple[str, ...] = ()
    sbatch: Mapping[str, str | bool] = dataclasses.field(default_factory=dict)
    path: str = ""


# The shape of a job: a grid's `resources` may set these (they describe its runs, not the cluster).
JOB_KEYS = ("gpus", "cpus", "mem_gb", "time_min", "runs_per_job", "concurrency", "gpu_hours_per_step",
            "concurrent_speedup")
MINIMUM = {"gpus": 0, "cpus": 1, "mem_gb": 0.01, "time_min": 1, "signal_delay_s": 0, "max_requeues": 0,
           "array_limit": 1, "array_parallelism": 1, "runs_per_job": 1, "concurrency": 1, "gpu_hours_per_step": 0,
           "concurrent_speedup": 0}
_LIST_KEYS = ("setup", "sbatch")


def job_shape(values: Located) -> dict[str, Any]:
    """A grid's `resources` mapping, checked and typed (only the job-shape keys)."""
    check_keys(values, JOB_KEYS, "resources")
    typed = typed_fields(Profile(), values, values, MINIMUM)
    return {key: getattr(typed, key) for key in values}


def load_profile(path: Path, executor: str | None = None) -> Profile:
    """Read and check a profile; `executor` (the command line's) overrides the profile's own."""
    data = load_yaml(path, "profile")
    keys = [f.name for f in dataclasses.fields(Profile) if f.name != "path"]
    check_keys(data, keys, f"profile {path}")
    scalars = {k: v for k, v in data.items() if k not in _LIST_KEYS}
    profile = typed_fields(Profile(path=str(path)), scalars, data, MINIMUM)
    get_executor(profile.executor, where=data.where("executor"))  # an unknown name fails at its line
    setup = data.get("setup", LocatedList(Path(path), data.line))
    expect(setup, list, data.where("setup"), "setup is a list of shell lines")
    for i, line in enumerate(setup):
        expect(line, str, setup.where(i), "each setup entry is one shell line (a string)")
    sbatch = data.get("sbatch", Located(Path(path), data.line))
    expect(sbatch, dict, data.where("sbatch"), "sbatch is a mapping of extra sbatch options (name: value)")
    for key, value in sbatch.items():
        expect(value, (str, int, float, bool), sbatch.where(key), f"sbatch option {key!r} needs a value")
        if value is False:
            raise OffdiffError(f"{sbatch.where(key)}: sbatch option {key!r}: leave it out instead of false")
    options = {str(k): v if v is True else str(v) for k, v in sbatch.items()}  # true: a flag without a value
    profile = dataclasses.replace(profile, setup=tuple(setup), sbatch=options)
    if executor is not None:
        profile = dataclasses.replace(profile, executor=executor)
    get_executor(profile.executor).check(profile)
    return profile


def check_job_shape(profile: Profile) -> None:
    """The concurrency keys against the job's shape, once a grid's `resources` are applied to the profile."""
    where = f"{profile.path or 'profile'} (or the grid's resources)"
    k = profile.concurrency
    if k > profile.runs_per_job:
        raise OffdiffError(f"{where}: concurrency={k} is more than runs_per_job={profile.runs_per_job}: a job has "
                           f"no more runs than that to run at once; raise runs_per_job or lower concurrency")
    if k > profile.cpus:
        raise OffdiffError(f"{where}: concurrency={k} needs at least {k} cpus (each concurrent run gets "
                           f"cpus // concurrency torch threads), got cpus={profile.cpus}")
    if profile.concurrent_speedup > k:
        raise OffdiffError(f"{where}: concurrent_speedup={profile.concurrent_speedup:g} is more than "
                           f"concurrency={k}: it is the aggregate steps/s of {k} runs at once over one run's")
    if profile.cuda_mps and (k == 1 or profile.gpus == 0):
        raise OffdiffError(f"{where}: cuda_mps shares a GPU between concurrent runs: it needs concurrency > 1 "
                           f"and gpus > 0 (got concurrency={k}, gpus={profile.gpus})")


def threads_per_run(profile: Profile) -> int:
    """Torch CPU threads of each run: the job's cpus shared by the runs it trains at once."""
    return profile.cpus // profile.concurrency  # at least 1: check_job_shape
