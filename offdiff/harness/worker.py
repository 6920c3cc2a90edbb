"""One run of a job that trains its runs concurrently: `python -m offdiff.harness.worker REQUEST RESULT JOB_PID`.

REQUEST is the pickled (TrainRequest, cache_only, torch threads) that the job wrote; RESULT receives the run's
outcome as JSON ({"state": ..., "error": ...}), written atomically. See offdiff/harness/pool.py.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1  # prctl option, from linux/prctl.h


def _die_with_job(job_pid: int) -> None:
    """Have Linux kill this process when the job dies (elsewhere the job's own cleanup is all there is)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != job_pid:  # the job died before the request above took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    payload, result, job_pid = Path(argv[0]), Path(argv[1]), int(argv[2])
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # preemption: the job requeues, the workers just end with it
    _die_with_job(job_pid)

    import torch  # after the two lines above: a signal may come while torch loads

    from offdiff.harness.job import train_one
    from offdiff.io import atomic_write_json

    request, cache_only, threads = pickle.loads(payload.read_bytes())
    torch.set_num_threads(threads)
    state, error = train_one(request, cache_only)
    atomic_write_json(result, {"state": state, "error": error})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
