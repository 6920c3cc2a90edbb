"""offdiff/harness/processes.py: at most K children at a time, every end reported, none outliving the loop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from offdiff.harness.processes import run_at_most


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)


def test_at_most_k_at_once_in_order_and_every_end_reported(tmp_path: Path):
    """Each child holds a marker file while it runs; no start may see `limit` markers already there."""
    seen_running: list[int] = []
    ends: dict[int, int] = {}

    def start(i: int) -> subprocess.Popen:
        seen_running.append(len(list(tmp_path.glob("*.running"))))
        marker = tmp_path / f"{i}.running"
        marker.touch()
        return _child(f"import time, pathlib; time.sleep(0.3); pathlib.Path({str(marker)!r}).unlink(); "
                      f"raise SystemExit({i})")

    run_at_most(range(5), 2, start, lambda i, process, wall_s: ends.__setitem__(i, process.returncode), poll_s=0.02)
    assert ends == {i: i for i in range(5)}  # every child's exit status reached `ended`, under its own item
    assert max(seen_running) <= 1 and seen_running[:2] == [0, 1]  # two at once, never a third
    assert not list(tmp_path.glob("*.running"))


@pytest.mark.parametrize("kill, code", [(False, -15), (True, -9)])
def test_leaving_early_stops_every_running_child(kill, code):
    started: list[subprocess.Popen] = []
    stopped: list[tuple[str, int]] = []

    def start(name: str) -> subprocess.Popen:
        started.append(_child("import time; time.sleep(60)"))
        return started[-1]

    def ended(name: str, process: subprocess.Popen, wall_s: float) -> None:
        raise AssertionError("no child should end on its own")

    def interrupt(name: str) -> subprocess.Popen:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_at_most(["a", "b", "c"], 3, lambda n: interrupt(n) if n == "c" else start(n), ended,
                    lambda name, process, wall_s: stopped.append((name, process.returncode)), kill=kill, poll_s=0.02)
    assert stopped == [("a", code), ("b", code)]  # SIGTERM, or SIGKILL with kill
    assert all(p.poll() is not None for p in started)


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        run_at_most([1], 0, _child, lambda *_: None)
