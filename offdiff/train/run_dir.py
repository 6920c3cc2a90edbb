"""A run's folder: manifest, JSONL logs, atomic checkpoint, DONE marker and a lock; and offdiff's write layer.

Every file is replaced atomically (temp file in the same folder, then rename), so a killed job leaves either
the old file or the new one, never half of one; the JSONL logs are appended to, and a restart rewinds them to
its checkpoint (a line cut short by a kill is dropped); a whole folder (`atomic_folder`) is built beside its target and
swapped in. A full disk or a read-only folder is one line (`cannot write PATH: No space left on device`), not
a traceback. A second process pointed at a run that is in use gets a clear error instead of interleaving its
writes. Run folders, the harness's records and `aggregate`'s results are written through `_make_dir`, `_create`
and `_write`, so tests can make them fail (tests/test_faults.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from offdiff.errors import OffdiffError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OS error while writing `path` (full disk, read-only folder, no permission) becomes one line."""
    try:
        yield
    except OSError as exc:
        raise OffdiffError(f"cannot write {path}: {exc.strerror or exc}") from None


def _make_dir(path: Path, temp_prefix: str = "") -> Path:
    """Make folder `path`, or with `temp_prefix` a new temp folder inside it; returns the folder."""
    if temp_prefix:
        return Path(tempfile.mkdtemp(dir=path, prefix=temp_prefix))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _create(path: Path, temp: bool = False) -> Any:
    """Open `path` to append (binary); with `temp`, create a temp file beside it instead: `(fd, name)`."""
    if temp:
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    return open(path, "ab")  # noqa: SIM115 - the caller closes it


def _write(f: Any, data: bytes) -> None:
    f.write(data)
    f.flush()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with writing(path):
        _make_dir(path.parent)
        fd, tmp = _create(path, temp=True)
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
            with os.fdopen(fd, "wb") as f:
                _write(f, data)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def atomic_folder(path: Path, drop: Iterable[str] = ()) -> Iterator[Path]:
    """Build a folder's new contents in a temp folder beside it; on success swap it in whole, else leave `path`.

    Entries of `path` that the new contents do not replace are carried over (e.g. a hand-written ABOUT.md),
    except those named in `drop` (outputs the new contents no longer have). The
    swap is two renames; a kill between them leaves `path` missing and its previous contents in `.NAME.old-*`.
    """
    path, drop = Path(path).resolve(), set(drop)  # resolved: `--out .` or a symlink replace the folder itself
    with writing(path):
        tmp = _make_dir(_make_dir(path.parent), f".{path.name}.new-")
    try:
        yield tmp
        with writing(path):
            os.chmod(tmp, 0o777 & ~_umask())
            if path.is_dir():
                for old in path.iterdir():
                    if old.name not in drop and not (tmp / old.name).exists():
                        (shutil.copytree if old.is_dir() else shutil.copy2)(old, tmp / old.name)
                previous = _make_dir(path.parent, f".{path.name}.old-")
                os.replace(path, previous)
                os.replace(tmp, path)
                shutil.rmtree(previous, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def _json_object(path: Path) -> Any:
    """The JSON in `path`, or the exception that reading it raised (the caller names the damaged file)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return exc


class RunDir:
    """The folder of one run (algorithm, resolved config, dataset, seed)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_file: Any = None

    manifest = property(lambda self: self.path / "manifest.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    evals = property(lambda self: self.path / "evals.jsonl")
    diagnostics = property(lambda self: self.path / "diagnostics.jsonl")  # offdiff/train/diagnostics.py
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    weights = property(lambda self: self.path / "weights.pt")  # what `--keep final` leaves of the checkpoint
    done_marker = property(lambda self: self.path / "DONE")

    def is_done(self) -> bool:
        return self.done_marker.exists()

    def done_summary(self) -> dict[str, Any]:
        """The summary in DONE; a damaged DONE is a clear error (it is written atomically, so only damage makes one)."""
        summary = _json_object(self.done_marker)
        if not isinstance(summary, dict):
            raise OffdiffError(f"DONE marker {self.done_marker} is corrupt ({summary}); move it away to finish the run "
                               "again from its checkpoint") from None
        return summary

    def check_manifest(self, expected: dict[str, Any], keys: Iterable[str]) -> None:
        """The run's manifest.json is readable and names this run (`keys` of `expected`); else a clear error."""
        found = _json_object(self.manifest)
        if not isinstance(found, dict):
            raise OffdiffError(f"manifest {self.manifest} is corrupt ({found}); move the run folder away to start it "
                               "again")
        plain = json.loads(json.dumps(expected, default=str))
        differ = [k for k in keys if found.get(k) != plain.get(k)]
        if differ:
            raise OffdiffError(f"manifest {self.manifest} describes another run ({', '.join(differ)} differ); move the "
                               "run folder away to start this run there")

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
        with writing(self.path / ".lock"):
            _make_dir(self.path)
            handle = _create(self.path / ".lock")
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
        with writing(path), _create(path) as f:
            _write(f, (json.dumps(row, sort_keys=True) + "\n").encode())

    def rewind_logs(self, position: tuple[int, int]) -> None:
        """Drop log rows written after the checkpoint at (stage index, step): they will be written again."""
        for path in (self.metrics, self.evals, self.diagnostics):
            kept = [r for r in read_jsonl(path) if (r["stage_index"], r["step"]) <= position]
            atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept).encode())

    def eval_rows(self) -> Iterator[dict[str, Any]]:
        yield from read_jsonl(self.evals)

    def diagnostic_rows(self) -> Iterator[dict[str, Any]]:
        yield from read_jsonl(self.diagnostics)
