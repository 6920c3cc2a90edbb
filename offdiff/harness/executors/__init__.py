"""The backends a grid runs on, one class each, found by the profile's `executor:` name.

An executor builds submitit's executor from the profile (`make`), launches a phase of the grid's jobs (`launch`),
says whether `grid submit` waits for them (`waits`), and answers `grid status` and `grid cancel` for the jobs it
submitted (`job_states`, `cancel`). A new backend is a subclass registered with `register`. The built-in ones
load on first use, so their names are known without importing submitit (`offdiff --help` stays light).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, TypeVar

from offdiff.errors import OffdiffError

if TYPE_CHECKING:
    from pathlib import Path

    import submitit

    from offdiff.harness.profile import Profile
    from offdiff.harness.record import Submission
    from offdiff.harness.schedule import Array, Job

Submit = Callable[[Sequence["Job"]], list["submitit.Job"]]


class Executor:
    """One backend. The defaults fit a backend that runs a phase's jobs on this machine and waits for them."""

    name: ClassVar[str]
    waits: ClassVar[bool] = True  # `grid submit` waits for each phase (else a scheduler orders them by dependency)
    raise_on_failure: ClassVar[bool] = True  # a job with a failed run fails (see GridJob)
    progress_bar: ClassVar[bool] = False  # `grid submit` shows a bar of finished runs while it waits
    submitted_as: ClassVar[str] = "array: jobs"  # how `grid submit` names what one submission queued

    def check(self, profile: Profile) -> None:
        """Refuse a profile this backend cannot run (one line naming the profile)."""

    def make(self, profile: Profile, logs: Path, name: str, after: list[str]) -> submitit.Executor:
        """The submitit executor for one phase; `after`: the cache-phase jobs its jobs wait for."""
        raise NotImplementedError

    def phases(self, arrays: Sequence[Array]) -> list[list[Array]]:
        """The groups `launch` gets: consecutive arrays of the same phase run as one queue."""
        groups: list[list[Array]] = []
        for array in arrays:
            if groups and (groups[-1][0].phase, groups[-1][0].after_cache) == (array.phase, array.after_cache):
                groups[-1].append(array)
            else:
                groups.append([array])
        return groups

    def launch(self, submit: Submit, jobs: Sequence[Job], profile: Profile, tick: Callable[[], None]) -> None:
        """Run one phase's jobs through `submit` (which records them); `tick` advances the progress bar."""
        for job in submit(jobs):
            job.wait()

    def job_states(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The scheduler's state of each job without a result (RUNNING, PENDING, ...; ENDED: gone without one)."""
        return dict.fromkeys(job_ids, "ENDED")

    def cancel(self, jobs: Sequence[tuple[Submission, str]]) -> list[str]:
        """Stop these (submission, job id) jobs; the ids it cancelled."""
        return []


E = TypeVar("E", bound=Executor)

_REGISTERED: dict[str, str | type[Executor]] = {
    "slurm": "offdiff.harness.executors.slurm:SlurmExecutor",
    "local": "offdiff.harness.executors.local:LocalExecutor",
    "debug": "offdiff.harness.executors.local:DebugExecutor",
}


def register(cls: type[E]) -> type[E]:
    """Make `cls` the executor named `cls.name` (a class decorator)."""
    _REGISTERED[cls.name] = cls
    return cls


def names() -> list[str]:
    """The registered executors' names, the built-in ones first."""
    return list(_REGISTERED)


def get_executor(name: str, where: str = "") -> Executor:
    """The executor registered as `name`; an unknown name is a one-line error (at `where`) listing the known ones."""
    if name not in _REGISTERED:
        raise OffdiffError(f"{where + ': ' if where else ''}executor={name!r} is not one of {names()}")
    cls = _REGISTERED[name]
    if isinstance(cls, str):
        module, attribute = cls.split(":")
        cls = _REGISTERED[name] = getattr(importlib.import_module(module), attribute)
    return cls()


def by_executor(items: Sequence[tuple[Submission, str]],
                where: str) -> list[tuple[Executor, list[tuple[Submission, str]]]]:
    """(submission, job id) pairs grouped by the executor that submitted them, in the registry's order; `where`:
    the submission record, named by the error for an executor that is not registered."""
    found: dict[str, list[tuple[Submission, str]]] = {}
    for submission, job_id in items:
        found.setdefault(submission.executor, []).append((submission, job_id))
    order = {name: i for i, name in enumerate(_REGISTERED)}  # an unknown name sorts last and fails in get_executor
    return [(get_executor(name, where), found[name]) for name in sorted(found, key=lambda n: order.get(n, len(order)))]
