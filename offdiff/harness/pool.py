"""A job's packed runs trained `concurrency` at a time, each in its own worker process (a profile's `concurrency`).

Each worker is `python -m offdiff.harness.worker REQUEST RESULT JOB_PID`: it trains one run exactly as a job
that trains its runs in turn would (`offdiff.harness.job.train_one`), with its own torch threads, and writes the
run's outcome to RESULT. Its stdout and stderr go to its own log, `<job's log folder>/<job id>_run<i>.log`,
appended to at every start of the job, each start under a header line. The job starts the next run as soon as
one ends and records every outcome itself (one writer for the job's outcome file). A worker that ends without
a result (killed, out of memory, a crash in native code) is a failed run, with the tail of its log as the error.

The workers end with the job: the job kills those still running whenever it stops (e.g. to requeue itself at
SIGUSR2), and each worker asks Linux to kill it if the job dies first. They ignore SIGUSR2, which SLURM sends
to every process of the job at preemption: only the job requeues, and the requeued job resumes each unfinished
run from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from offdiff.harness.processes import run_at_most
from offdiff.io import atomic_write_bytes
from offdiff.train.runner import TrainRequest

POLL_S = 0.1
Record = Callable[[str, str, str], str]  # (run key, state, error) -> state


@dataclasses.dataclass
class _Worker:
    key: str
    process: subprocess.Popen
    request: Path
    result: Path
    log: Path

    def outcome(self) -> tuple[str, str]:
        self.request.unlink(missing_ok=True)
        if self.result.exists():  # written atomically by the worker
            found = json.loads(self.result.read_text())
            return found["state"], found["error"]
        code = self.process.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()][-5:]
        return "failed", "\n".join([f"the run's worker {how} without an outcome", *tail, f"(log: {self.log})"])


def _start(index: int, key: str, request: TrainRequest, folder: Path, job_id: str, threads: int, cache_only: bool,
           env: Mapping[str, str]) -> _Worker:
    stem = folder / f"{job_id}_run{index}"
    payload, result, log = stem.with_suffix(".request.pkl"), stem.with_suffix(".result.json"), stem.with_suffix(".log")
    result.unlink(missing_ok=True)  # a requeued job reuses the names: the last start's result only
    atomic_write_bytes(payload, pickle.dumps((request, cache_only, threads)))
    with open(log, "a") as out:
        out.write(f"== job {job_id}, run {index}: {key}, {threads} thread(s), started "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%S')} ==\n")
        out.flush()
        command = [sys.executable, "-m", "offdiff.harness.worker", str(payload), str(result), str(os.getpid())]
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **env, "OMP_NUM_THREADS": str(threads)})
    print(f"[offdiff grid] job {job_id}: started run {index} {key} (log: {log})", file=sys.stderr, flush=True)
    return _Worker(key, process, payload, result, log)


def run_concurrently(runs: Sequence[tuple[str, TrainRequest]], concurrency: int, threads: int, folder: Path,
                     job_id: str, cache_only: bool, record: Record, env: Mapping[str, str] | None = None
                     ) -> dict[str, str]:
    """Train `runs` ((key, request) pairs) `concurrency` at a time; `record` stores each outcome as it comes.

    `env` is added to the workers' environment (e.g. CUDA MPS's). Returns each run's state. When the job stops
    (requeue, an error, Ctrl-C) its workers are killed with it; their checkpoints stay.
    """
    folder.mkdir(parents=True, exist_ok=True)
    states: dict[str, str] = {}
    workers: dict[int, _Worker] = {}

    def start(index: int) -> subprocess.Popen:
        key, request = runs[index]
        record(key, "started", "")  # `grid status`: running, not queued in this job
        workers[index] = _start(index, key, request, folder, job_id, threads, cache_only, env or {})
        return workers[index].process

    def ended(index: int, process: subprocess.Popen, wall_s: float) -> None:
        worker = workers.pop(index)
        states[worker.key] = record(worker.key, *worker.outcome())

    run_at_most(range(len(runs)), concurrency, start, ended, kill=True, poll_s=POLL_S)
    return states
