"""`offdiff data fetch d4rl:<name>` against a local HTTP server on the loopback address (never the internet)."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_d4rl_file

from offdiff.cli import main
from offdiff.data import d4rl
from offdiff.data.download import sha256_of
from offdiff.data.sources import list_local, resolve
from offdiff.errors import OffdiffError


class _Server:
    """Serves `files` (name -> bytes) under /gym_mujoco_v2/ with Range support; `cut_at` ends a body early."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_at: int | None = None
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                name = self.path.rsplit("/", 1)[-1]
                body = server.files.get(name)
                server.ranges.append(self.headers.get("Range"))
                if body is None or not self.path.startswith("/gym_mujoco_v2/"):
                    self.send_error(404)
                    return
                start, total = 0, len(body)
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match:
                    start = int(match.group(1))
                    if start >= total:
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(total - start))
                self.end_headers()
                end = total if server.cut_at is None else min(total, server.cut_at)
                self.wfile.write(body[start:end])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[_Server]:
    served = _Server()
    thread = threading.Thread(target=served.httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(d4rl.BASE_URL_VARIABLE, served.url)
    monkeypatch.setenv(d4rl.STORE_VARIABLE, str(tmp_path / "store"))
    yield served
    served.httpd.shutdown()


def _d4rl_bytes(tmp_path: Path) -> bytes:
    return write_d4rl_file(tmp_path / "src.hdf5").read_bytes()


def _fetch(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["data", "fetch", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fetch_then_train_source_everywhere(server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    body = _d4rl_bytes(tmp_path)
    server.files["hopper_medium-v2.hdf5"] = body
    code, out, err = _fetch(capsys, "d4rl:hopper-medium-v2", "--timeout", "20")
    assert code == 0, err
    stored = tmp_path / "store" / "hopper_medium-v2.hdf5"
    assert stored.read_bytes() == body and f"into {stored}" in out
    assert (tmp_path / "store" / "hopper_medium-v2.hdf5.sha256").read_text().split()[0] == sha256_of(stored)
    info = resolve("d4rl:hopper-medium-v2").info()
    assert (info.task, info.eval_env, info.is_d4rl) == ("hopper-medium", "Hopper-v4", True)
    assert resolve("d4rl:hopper-medium-v2").ref_scores().max == 3234.3
    [row] = [r for r in list_local() if r["source"] == "d4rl:hopper-medium-v2"]
    assert row["steps"] == 200 and row["ref_scores"]["min"] == -20.272305
    code, _, err = _fetch(capsys, "d4rl:hopper-medium-v2")  # present: checked against its SHA-256, no download
    assert code == 0 and len(server.ranges) == 1


def test_truncated_download_resumes(server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    body = _d4rl_bytes(tmp_path)
    server.files["walker2d_medium_replay-v2.hdf5"] = body
    server.cut_at = len(body) // 3
    code, _, err = _fetch(capsys, "d4rl:walker2d-medium-replay-v2", "--timeout", "20")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"stopped at {len(body) // 3} of {len(body)} bytes" in err and "again to resume" in err
    part = tmp_path / "store" / "walker2d_medium_replay-v2.hdf5.part"
    assert part.stat().st_size == len(body) // 3 and not part.with_suffix("").exists()
    server.cut_at = None
    code, _, err = _fetch(capsys, "d4rl:walker2d-medium-replay-v2", "--timeout", "20")
    assert code == 0, err
    assert server.ranges == [None, f"bytes={len(body) // 3}-"]
    assert (tmp_path / "store" / "walker2d_medium_replay-v2.hdf5").read_bytes() == body and not part.exists()


def test_checksum_mismatch_and_a_file_that_is_not_d4rl_leave_nothing(server: _Server, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    server.files["hopper_expert-v2.hdf5"] = _d4rl_bytes(tmp_path)
    code, _, err = _fetch(capsys, "d4rl:hopper-expert-v2", "--sha256", "0" * 64)
    assert code == 2 and "expected 0000" in err
    server.files["hopper_random-v2.hdf5"] = b"<html>a proxy's error page</html>"
    code, _, err = _fetch(capsys, "d4rl:hopper-random-v2")
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "store").iterdir())


def test_fetch_without_network_fails_in_seconds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(d4rl.BASE_URL_VARIABLE, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv(d4rl.STORE_VARIABLE, str(tmp_path / "store"))
    start = time.monotonic()
    code, _, err = _fetch(capsys, "d4rl:hopper-medium-v2")
    assert code == 2 and "cannot reach 127.0.0.1:9" in err and "login node" in err
    assert time.monotonic() - start < 5 and not (tmp_path / "store").exists()


@pytest.mark.parametrize(("name", "message"), [
    ("hopper-medium-v9", "unknown D4RL dataset d4rl:hopper-medium-v9"),
    ("antmaze-umaze-v2", "Minari's D4RL namespace"),
])
def test_unknown_names(name: str, message: str, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _fetch(capsys, f"d4rl:{name}")
    assert code == 2 and message in err


def test_a_dataset_not_fetched_says_how(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(d4rl.STORE_VARIABLE, str(tmp_path / "store"))
    with pytest.raises(OffdiffError, match="not in the local D4RL store.*offdiff data fetch d4rl:hopper-medium-v2"):
        resolve("d4rl:hopper-medium-v2")
