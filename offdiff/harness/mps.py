"""CUDA MPS for one job (a profile's `cuda_mps: true`): one control daemon, private to the job, for its workers.

With MPS the CUDA work of the job's concurrent runs shares the GPU's compute units at once instead of taking
turns in time slices, and a GPU in exclusive-process mode accepts them all. The daemon's pipe and log folders are
new temporary folders on the node (a pipe path must stay short), passed to the workers through
CUDA_MPS_PIPE_DIRECTORY and CUDA_MPS_LOG_DIRECTORY; the daemon is asked to quit when the job's runs end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from offdiff.errors import OffdiffError

CONTROL = "nvidia-cuda-mps-control"


@contextlib.contextmanager
def cuda_mps(logs: Path) -> Iterator[dict[str, str]]:
    """Start the job's MPS daemon; yields the environment its clients need; stops it at the end.

    `logs` (the job's log folder) gets a copy of the daemon's log when it stops.
    """
    control = shutil.which(CONTROL)
    if control is None:
        raise OffdiffError(f"cuda_mps: true in the profile, but {CONTROL} is not on PATH on this node; load the "
                           f"CUDA module in the profile's setup lines, or drop cuda_mps")
    root = Path(tempfile.mkdtemp(prefix="offdiff-mps-"))
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log")}
    for folder in env.values():
        Path(folder).mkdir()
    daemon_env = {**os.environ, **env}
    started = subprocess.run([control, "-d"], env=daemon_env, capture_output=True, text=True)
    if started.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise OffdiffError(f"cuda_mps: `{CONTROL} -d` failed (status {started.returncode}): "
                           f"{(started.stderr or started.stdout).strip()}")
    try:
        yield env
    finally:
        subprocess.run([control], input="quit\n", env=daemon_env, capture_output=True, text=True)
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root / "log", logs / "mps-log", dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
