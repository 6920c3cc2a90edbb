"""Many runs of a pair, a few at a time: every (side, seed) is `run.py` for one seed and one side, in its own process.

`run.py --seeds 0-9 --side both --parallel 2` plans each run first (a DONE run is skipped; an unfinished official
run is an error before anything starts, since it cannot resume), then keeps `--parallel` runs going, the official
side first (the slower one, so the lanes end together). Each run gets `--threads` torch threads (many threads on
few cores are many times slower) and its own log, `<runs-dir>/<grid>/_logs/<label>_<dataset>_seed<S>.log`.
One line per start and per end; at the end a table of every run's state, wall-clock and final score. A run that
fails does not stop the others. Ctrl-C stops the running ones: offdiff runs resume from their last checkpoint,
an official run has to be moved away and run again (the line says which).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from offdiff.errors import OffdiffError
from offdiff.harness.processes import run_at_most
from offdiff.records import RunDir

POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class LaneRun:
    """One run of the sweep: a side's label (`dtql`, `dtql-official`), its seed, its folder and the command."""

    label: str
    seed: int
    run_dir: RunDir
    command: tuple[str, ...]
    log: Path
    official: bool

    @property
    def name(self) -> str:
        return f"{self.label} seed {self.seed}"


@dataclasses.dataclass
class Outcome:
    run: LaneRun
    state: str  # done, skipped (DONE before), failed, stopped
    wall_s: float | None = None
    score: float | None = None
    error: str = ""


def parse_seeds(spec: str) -> list[int]:
    """'0-9', '0,2,5' or '3' (mixed: '0-4,7') as a sorted list of distinct seeds."""
    seeds: set[int] = set()
    try:
        for part in spec.split(","):
            low, dash, high = part.strip().partition("-")
            first, last = int(low), int(high) if dash else int(low)
            if last < first:
                raise ValueError
            seeds.update(range(first, last + 1))
    except ValueError:
        raise OffdiffError(f"--seeds {spec!r}: expected seeds like 0-9, 0,2,5 or 0-4,7") from None
    return sorted(seeds)


def check_resumable(runs: Sequence[LaneRun]) -> None:
    """An official run that started and did not finish cannot resume: say so, for all of them, before any start."""
    stuck = [r.run_dir.path for r in runs if r.official and r.run_dir.path.exists() and not r.run_dir.is_done()]
    if stuck:
        raise OffdiffError(f"{len(stuck)} unfinished official run(s) cannot resume (the release's counters are not "
                           f"saved): {', '.join(map(str, stuck))}; move them away to run them again")


def _tail(log: Path, lines: int = 3) -> str:
    """The log's last non-empty lines, on one line."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    return " | ".join([line.strip() for line in text if line.strip()][-lines:])


def _finished(run: LaneRun, code: int, wall_s: float) -> Outcome:
    if code == 0 and run.run_dir.is_done():
        return Outcome(run, "done", wall_s, run.run_dir.done_summary().final_normalized_score)
    how = "ended without DONE" if code == 0 else f"exit status {code}" if code > 0 else f"killed by signal {-code}"
    return Outcome(run, "failed", wall_s, error=f"{how}: {_tail(run.log)} (log: {run.log})")


def _say(text: str) -> None:
    print(f"[fidelity {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _start(run: LaneRun, env: dict[str, str]) -> subprocess.Popen:
    run.log.parent.mkdir(parents=True, exist_ok=True)
    with open(run.log, "a") as log:
        log.write(f"== {run.name}, started {time.strftime('%Y-%m-%dT%H:%M:%S')} ==\n")
        log.flush()
        process = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env)
    _say(f"started {run.name} (log: {run.log})")
    return process


def run_lanes(runs: Sequence[LaneRun], parallel: int, threads: int) -> list[Outcome]:
    """Run `runs` (DONE ones skipped) `parallel` at a time in the given order; every run's outcome, in order."""
    outcomes = {r: Outcome(r, "skipped", score=r.run_dir.done_summary().final_normalized_score)
                for r in runs if r.run_dir.is_done()}
    pending = [r for r in runs if r not in outcomes]
    _say(f"{len(pending)} run(s) to train, {len(outcomes)} DONE already; {parallel} at a time, {threads} "
         f"thread(s) each")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}

    def ended(run: LaneRun, process: subprocess.Popen, wall_s: float) -> None:
        outcome = outcomes[run] = _finished(run, process.returncode, wall_s)
        score = "" if outcome.score is None else f", final score {outcome.score:.1f}"
        _say(f"{outcome.state} {run.name} in {outcome.wall_s:.0f} s{score}" +
             (f": {outcome.error}" if outcome.error else ""))

    def stopped(run: LaneRun, process: subprocess.Popen, wall_s: float) -> None:
        again = "move its folder away to run it again" if run.official else "it resumes from its checkpoint"
        outcomes[run] = Outcome(run, "stopped", wall_s, error=f"{run.run_dir.path}: {again}")
        _say(f"stopped {run.name}: {outcomes[run].error}")

    run_at_most(pending, parallel, lambda run: _start(run, env), ended, stopped, poll_s=POLL_S)
    return [outcomes.get(r, Outcome(r, "not started")) for r in runs]


def summary(outcomes: Sequence[Outcome]) -> str:
    """A table of the sweep: one row per run."""
    rows = ["| run | state | wall-clock s | final score |", "|:---|:---|---:|---:|"]
    for o in outcomes:
        wall = "" if o.wall_s is None else f"{o.wall_s:.0f}"
        score = "" if o.score is None else f"{o.score:.2f}"
        rows.append(f"| {o.run.name} | {o.state} | {wall} | {score} |")
    return "\n".join(rows)

