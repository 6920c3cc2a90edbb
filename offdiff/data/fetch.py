"""`fetch`: the only code that downloads data (`offdiff data fetch`; training never downloads).

`d4rl:<name>` downloads D4RL's HDF5 file into the D4RL store (offdiff.data.download: resumable, checked,
time-limited). A Minari id downloads through Minari in a child process: huggingface_hub can block forever
on an endpoint that accepts connections and never answers, so the child runs in its own process group,
which is killed when `timeout_s` runs out. Both first check that the server can be reached at all, so a
machine without network fails in seconds instead of after the library's retries.
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

from offdiff.data import d4rl
from offdiff.data.download import check_reachable, download, verify
from offdiff.data.hdf5_source import read_layout
from offdiff.errors import OffdiffError

_CHILD = "import sys, minari; minari.download_dataset(sys.argv[1])"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def fetch(dataset: str, timeout_s: float = 600, expected_sha256: str | None = None) -> Path:
    """Download `d4rl:<name>` or a Minari id (`minari:<id>` or bare) into its local store; a no-op if present."""
    scheme, sep, rest = dataset.partition(":")
    if sep and scheme == "d4rl":
        return fetch_d4rl(rest, timeout_s, expected_sha256)
    if expected_sha256 is not None:
        raise OffdiffError("--sha256 applies to d4rl: files; Minari checks its own downloads")
    return fetch_minari(rest if sep and scheme == "minari" else dataset, timeout_s)


def fetch_d4rl(name: str, timeout_s: float = 600, expected_sha256: str | None = None) -> Path:
    """D4RL's HDF5 file for `name` (e.g. `hopper-medium-v2`) into the D4RL store; checked, resumable."""
    d4rl.check_name(name)
    dest = d4rl.local_path(name)
    if dest.is_file():
        digest = verify(dest)
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise OffdiffError(f"{dest} has SHA-256 {digest}, expected {expected_sha256}")
        return dest
    url = d4rl.url(name)
    check_reachable(url, f"d4rl:{name}", timeout_s=min(timeout_s, 10.0))
    return download(url, dest, timeout_s=timeout_s, expected_sha256=expected_sha256, check=read_layout)


def _minari_endpoint() -> str | None:
    """The server Minari downloads from, when it is Hugging Face (Minari's default remote)."""
    remote = os.environ.get("MINARI_REMOTE", "hf://farama-minari")
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co") if remote.startswith("hf://") else None


def fetch_minari(dataset_id: str, timeout_s: float = 600) -> Path:
    """Download `dataset_id` into the local Minari store and return its folder (no-op if present)."""
    path = get_dataset_path(dataset_id)
    if (path / "data").is_dir():
        return path
    if importlib.util.find_spec("huggingface_hub") is None:
        raise OffdiffError('downloading needs huggingface_hub: pip install "minari[hf]"')
    endpoint = _minari_endpoint()
    if endpoint is not None:
        check_reachable(endpoint, dataset_id, timeout_s=min(timeout_s, 10.0))
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
