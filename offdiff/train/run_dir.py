"""A run's folder: manifest, JSONL logs, atomic checkpoint, DONE marker and a lock.

Every write is atomic (temp file in the same folder, then rename), so a killed job leaves either the
old file or the new one, never half of one. A second process pointed at a run that is in use gets a
clear error instead of interleaving its writes.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from offdiff.errors import OffdiffError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_torch_save(path: Path, payload: Any) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def torch_load(path: Path, what: str) -> Any:
    """Load a torch file written by offdiff; a truncated or corrupt file is a clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        raise OffdiffError(
            f"{what} {path} is corrupt or truncated ({type(exc).__name__}: {exc}); "
            f"move it away to start that part again"
        ) from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: ignore it
            continue
    return rows


class RunInUse(OffdiffError):
    """Another live process holds the run's lock."""


class RunDir:
    """The folder of one run (algorithm, resolved config, dataset, seed)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_file: Any = None

    manifest = property(lambda self: self.path / "manifest.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    evals = property(lambda self: self.path / "evals.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    weights = property(lambda self: self.path / "weights.pt")  # what `--keep final` leaves of the checkpoint
    done_marker = property(lambda self: self.path / "DONE")

    def is_done(self) -> bool:
        return self.done_marker.exists()

    def done_summary(self) -> dict[str, Any]:
        return json.loads(self.done_marker.read_text())

    def keep_final(self) -> None:
        """Replace a finished run's checkpoint by its final weights: the modules and the algorithm's generator,
        without optimizer and scheduler state or RNG streams (the run is done and never resumes)."""
        if not (self.is_done() and self.checkpoint.exists()):
            return
        state = torch_load(self.checkpoint, "checkpoint")
        algorithm = state["algorithm"]
        atomic_torch_save(self.weights, {"position": state["position"], "modules": algorithm["modules"],
                                         "generator": algorithm["generator"]})
        self.checkpoint.unlink()

    def lock(self) -> None:
        """Take an exclusive lock for this process; another live process holding it is an error."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / ".lock", "a")  # noqa: SIM115 - held for the life of the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunInUse(f"run {self.path} is in use by another process; not starting a second copy") from None
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def append(self, path: Path, row: dict[str, Any]) -> None:
        with open(path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")

    def rewind_logs(self, position: tuple[int, int]) -> None:
        """Drop log rows written after the checkpoint at (stage index, step): they will be written again."""
        for path in (self.metrics, self.evals):
            kept = [r for r in read_jsonl(path) if (r["stage_index"], r["step"]) <= position]
            atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept).encode())

    def eval_rows(self) -> Iterator[dict[str, Any]]:
        yield from read_jsonl(self.evals)
