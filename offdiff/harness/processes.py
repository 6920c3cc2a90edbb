"""At most K child processes at a time over a queue: the scheduling a grid job's packed runs (`pool.py`) and the
fidelity harness's seed sweep (`benchmarks/fidelity/lanes.py`) share.

Items start in order as soon as a slot is free; each one's end is reported as it is seen. If the loop leaves
early (an error in a callback, Ctrl-C, a requeue signal), the processes still running are stopped and waited
for, and each is reported as stopped: no child outlives the loop.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Ended = Callable[[Item, subprocess.Popen, float], None]  # (item, its finished process, wall-clock s)


def run_at_most(items: Sequence[Item], limit: int, start: Callable[[Item], subprocess.Popen], ended: Ended,
                stopped: Ended | None = None, kill: bool = False, poll_s: float = 0.1) -> None:
    """Run `start(item)` for every item, at most `limit` at once, in order; `ended` as each exits.

    On leaving early, each running process gets SIGTERM (SIGKILL with `kill`), is waited for, and goes to
    `stopped` (if given).
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    pending = list(items)
    running: list[tuple[Item, subprocess.Popen, float]] = []
    try:
        while pending or running:
            while pending and len(running) < limit:
                item = pending.pop(0)
                running.append((item, start(item), time.monotonic()))
            time.sleep(poll_s)
            for entry in [e for e in running if e[1].poll() is not None]:
                running.remove(entry)
                item, process, began = entry
                ended(item, process, time.monotonic() - began)
    finally:
        for item, process, began in running:
            if kill:
                process.kill()
            else:
                process.terminate()
            process.wait()
            if stopped is not None:
                stopped(item, process, time.monotonic() - began)
