"""`fetch` never hangs: a server that accepts and never answers gives a clear error after the timeout."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from offdiff.data.fetch import fetch
from offdiff.errors import OffdiffError


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback TCP listener that completes handshakes (backlog) and never sends a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_fetch_times_out_clearly(silent_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    monkeypatch.delenv("MINARI_REMOTE", raising=False)
    start = time.monotonic()
    with pytest.raises(OffdiffError, match="timed out after 3 s.*offdiff data fetch"):
        fetch("mujoco/hopper/medium-v0", timeout_s=3)
    assert time.monotonic() - start < 10
    assert not os.path.exists(os.path.join(os.environ["MINARI_DATASETS_PATH"], "mujoco/hopper/medium-v0"))


def test_fetch_of_a_local_dataset_is_a_no_op(tiny_hopper_minari: str) -> None:
    path = fetch("test/hopper/tiny-v0", timeout_s=1)
    assert (path / "data").is_dir()
