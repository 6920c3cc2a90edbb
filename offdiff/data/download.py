"""One file over HTTP(S) into a local store: resumable, checksummed, time-limited, all or nothing.

The bytes go to `<file>.part`; a download cut short is resumed from there with an HTTP Range request the
next time. A complete file is checked (its length against the server's, the caller's content check, and
the SHA-256 when one is expected) and only then renamed into place, with its SHA-256 in `<file>.sha256`.
A host that cannot be resolved or reached fails at once: no retries.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from offdiff.errors import OffdiffError

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def check_reachable(url: str, what: str, timeout_s: float = 10.0) -> None:
    """Resolve and connect to `url`'s host once, so that a machine without network fails in seconds."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if host is None:
        raise OffdiffError(f"{url!r} is not a URL")
    found: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            found.append(None)
        except OSError as e:
            found.append(e)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout_s + 1)
    error = found[0] if found else TimeoutError(f"no answer in {timeout_s:g} s")
    if error is not None:
        raise OffdiffError(f"cannot fetch {what}: cannot reach {host}:{port} ({error}); no network here? run "
                           "`offdiff data fetch` on a machine with internet access (e.g. a login node)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int, timeout_s: float) -> urllib.request.addinfourl | None:
    """The response from `start` on; None when `start` is already the end of the file (HTTP 416)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:
            return None
        raise OffdiffError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise OffdiffError(
            f"could not reach {url} ({reason}); no network here? run `offdiff data fetch` on a machine with "
            "internet access (e.g. a login node) and copy the store"
        ) from None


def _total_and_offset(response: urllib.request.addinfourl, start: int) -> tuple[int | None, int]:
    """(the file's full length if the server says it, where this response starts)."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != start:
            raise OffdiffError(f"the server answered a resume request with a bad Content-Range "
                               f"{response.headers.get('Content-Range')!r}; delete the .part file and fetch again")
        return (None if match.group(3) == "*" else int(match.group(3))), start
    length = response.headers.get("Content-Length")
    return (int(length) if length is not None else None), 0


def download(url: str, dest: Path, *, timeout_s: float = 600, expected_sha256: str | None = None,
             check: Callable[[Path], None] | None = None, progress: bool = True) -> Path:
    """Download `url` to `dest` (resuming `dest.part`) and return `dest`; every failure is one OffdiffError.

    `timeout_s` bounds the whole download and each network wait. `check(path)` inspects the complete file
    before it is renamed into place (and raises OffdiffError if it is not what was asked for).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    deadline = time.monotonic() + timeout_s
    response = _open(url, start, min(timeout_s, 30.0))
    if response is None:  # a complete .part left by a fetch that stopped before its checks
        return _install(part, dest, url, expected_sha256, check)
    with response:
        total, offset = _total_and_offset(response, start)
        if offset == 0 and start:
            print(f"[fetch] the server cannot resume; downloading {dest.name} from the start", file=sys.stderr)
        received, last_report = offset, time.monotonic()
        with part.open("ab" if offset else "wb") as out:
            while True:
                if time.monotonic() > deadline:
                    raise OffdiffError(f"downloading {url} timed out after {timeout_s:g} s with {received} bytes "
                                       f"in {part}; run the same command again to resume")
                try:
                    block = response.read(CHUNK)
                except (TimeoutError, OSError) as e:
                    raise OffdiffError(f"downloading {url} stopped after {received} bytes ({e}); run the same "
                                       "command again to resume") from None
                if not block:
                    break
                out.write(block)
                received += len(block)
                if progress and time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    of = f" of {total / 2**20:.1f}" if total else ""
                    print(f"[fetch] {dest.name}: {received / 2**20:.1f}{of} MiB", file=sys.stderr, flush=True)
    if total is not None and received != total:
        raise OffdiffError(f"downloading {url} stopped at {received} of {total} bytes (kept in {part}); run the "
                           "same command again to resume")
    return _install(part, dest, url, expected_sha256, check)


def _install(part: Path, dest: Path, url: str, expected_sha256: str | None,
             check: Callable[[Path], None] | None) -> Path:
    """Check the complete `.part` file and rename it into place; a file that fails a check is deleted."""
    digest = sha256_of(part)
    try:
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise OffdiffError(f"{url} has SHA-256 {digest}, expected {expected_sha256}; the download was deleted")
        if check is not None:
            check(part)
    except OffdiffError:
        part.unlink(missing_ok=True)
        raise
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    os.replace(part, dest)
    return dest


def verify(dest: Path) -> str:
    """The SHA-256 of a stored file, checked against the one recorded at download (if any)."""
    digest = sha256_of(dest)
    recorded = dest.with_name(dest.name + ".sha256")
    if recorded.exists() and recorded.read_text().split()[0] != digest:
        raise OffdiffError(f"{dest} does not match the SHA-256 recorded when it was downloaded ({recorded}); "
                           "delete it and fetch it again")
    return digest
