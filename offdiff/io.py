"""offdiff's write layer and its small readers: atomic files and folders, JSONL, JSON and torch files.

Every file is replaced atomically (temp file in the same folder, then rename), so a killed job leaves either
the old file or the new one, never half of one; JSONL logs are appended to (a line cut short by a kill is
dropped when read); a whole folder (`atomic_folder`) is built beside its target and swapped in. A full disk or
a read-only folder is one line (`cannot write PATH: No space left on device`), not a traceback. Run folders,
the harness's records and `aggregate`'s results are written through `_make_dir`, `_create` and `_write`, so
tests can make them fail (tests/test_faults.py). torch is imported only by the functions that need it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

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


def open_to_append(path: Path) -> IO[bytes]:
    """`path` opened to append (binary), its folder made first; the caller closes it."""
    with writing(path):
        _make_dir(path.parent)
        return _create(path)


def append_line(path: Path, row: dict[str, Any]) -> None:
    """Append `row` to the JSONL file `path` as one line (keys sorted)."""
    with writing(path), _create(path) as f:
        _write(f, (json.dumps(row, sort_keys=True) + "\n").encode())


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


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())


def atomic_torch_save(path: Path, payload: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def torch_load(path: Path, what: str) -> Any:
    """Load a torch file written by offdiff; a truncated or corrupt file is a clear error."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        raise OffdiffError(
            f"{what} {path} is corrupt or truncated ({type(exc).__name__}: {exc}); "
            f"move it away to start that part again"
        ) from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL log ([] when it is missing); a line cut short by a kill is left out."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: ignore it
            continue
    return rows


def json_or_error(path: Path) -> Any:
    """The JSON in `path`, or the exception that reading it raised (the caller names the damaged file)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return exc
