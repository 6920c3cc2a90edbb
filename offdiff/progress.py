"""Progress of long loops (training stages, data collection): a tqdm bar on a terminal, plain lines in a log.

In a log file (SLURM jobs, `> log`) a bar's carriage returns are noise, so there it prints one line at most every
`every_s` seconds ($OFFDIFF_PROGRESS_S, default 30):
`[dql:train] step 12000/1000000 (1%) 212.4 steps/s ETA 1:17:31 critic_loss=0.52 q_loss=-3.1`.
`note` prints a line at once in both cases (e.g. each evaluation's score). `announce_if_slow` covers work with no
steps to count (a stage's set-up): silent when quick, a line every `every_s` seconds while it runs long.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from tqdm import tqdm


def eta(remaining: float, rate: float) -> str:
    """`h:mm:ss` for `remaining` units at `rate` units/s; `?` while the rate is unknown."""
    return str(datetime.timedelta(seconds=round(remaining / rate))) if rate > 0 else "?"


class Progress:
    def __init__(self, total: int | None, desc: str, unit: str = "step", enabled: bool = True, initial: int = 0,
                 every_s: float | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.enabled, self.total, self.desc, self.unit = enabled, total, desc, unit
        self.every_s = float(os.environ.get("OFFDIFF_PROGRESS_S", 30)) if every_s is None else every_s
        self.n = self.line_n = initial
        self.last_line = time.monotonic()
        self.postfix: dict[str, Any] = {}
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not self.tty, smoothing=0.1,
                        file=self.stream)

    def rate(self) -> float:
        """Units/s since the previous line (or the start): the current speed, for the ETA."""
        elapsed = time.monotonic() - self.last_line
        return (self.n - self.line_n) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        where = f"{self.unit} {self.n}"
        if self.total:
            where += f"/{self.total} ({100 * self.n / self.total:.0f}%)"
        text = f"[{self.desc}] {where} {rate:.1f} {self.unit}s/s"
        if self.total:
            text += f" ETA {eta(self.total - self.n, rate)}"
        return " ".join([text, *(f"{k}={_fmt(v)}" for k, v in self.postfix.items())])

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = False, **kw: Any) -> None:
        """The values shown after the counts (tqdm's signature; `refresh` is accepted and ignored)."""
        self.postfix = {**(values or {}), **kw}
        if self.tty:
            self.bar.set_postfix({k: _fmt(v) for k, v in self.postfix.items()}, refresh=False)

    def update(self, n: int = 1, values: dict[str, Any] | None = None) -> None:
        self.n += n
        self.bar.update(n)
        if values is not None:
            self.set_postfix(values)
        if self.enabled and not self.tty and time.monotonic() - self.last_line >= self.every_s:
            print(self.line(), file=self.stream, flush=True)
            self.last_line, self.line_n = time.monotonic(), self.n

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        self.bar.close()


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def announce_if_slow(what: str, after_s: float = 10.0, every_s: float | None = None, enabled: bool = True,
                     stream: TextIO | None = None) -> Iterator[None]:
    """Run the block; once it has run `after_s` seconds, say so, again every `every_s` ($OFFDIFF_PROGRESS_S, default
    30), and say how long it took when it ends. A block quicker than `after_s` prints nothing."""
    out = stream or sys.stderr
    every = every_s if every_s is not None else float(os.environ.get("OFFDIFF_PROGRESS_S", "30"))
    started, finished = time.monotonic(), threading.Event()

    def report() -> None:
        wait = after_s
        while not finished.wait(wait):
            elapsed = datetime.timedelta(seconds=round(time.monotonic() - started))
            print(f"{what}: running for {elapsed}", file=out, flush=True)
            wait = every

    watcher = threading.Thread(target=report, daemon=True) if enabled else None
    if watcher is not None:
        watcher.start()
    try:
        yield
    finally:
        finished.set()
        if watcher is not None:
            watcher.join()
            took = time.monotonic() - started
            if took >= after_s:
                print(f"{what}: done in {datetime.timedelta(seconds=round(took))}", file=out, flush=True)
