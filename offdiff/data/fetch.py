"""`fetch`: the only code that downloads data, run in a child process that is killed after a timeout.

huggingface_hub can block forever on an endpoint that accepts connections and never answers, so the
download runs in its own process group, which is killed when `timeout_s` runs out.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from minari.storage.datasets_root_dir import get_dataset_path

from offdiff.errors import OffdiffError

_CHILD = "import sys, minari; minari.download_dataset(sys.argv[1])"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def fetch(dataset_id: str, timeout_s: float = 600) -> Path:
    """Download `dataset_id` into the local Minari store and return its folder (no-op if present)."""
    path = get_dataset_path(dataset_id)
    if (path / "data").is_dir():
        return path
    if importlib.util.find_spec("huggingface_hub") is None:
        raise OffdiffError('downloading needs huggingface_hub: pip install "minari[hf]"')
    existed = path.exists()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, dataset_id],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        try:
            returncode = child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            returncode = None
        log.seek(0)
        output = log.read().decode(errors="replace")
    if returncode == 0 and (path / "data").is_dir():
        return path
    if not existed:
        shutil.rmtree(path, ignore_errors=True)
    if returncode is None:
        raise OffdiffError(
            f"downloading {dataset_id} timed out after {timeout_s:g} s (no network, or the server does not "
            "answer); run `offdiff data fetch` on a machine with internet access, or raise the timeout"
        )
    raise OffdiffError(
        f"could not download {dataset_id}: {_last_line(output)}; check the id (`minari list remote`) "
        "and the network"
    )
