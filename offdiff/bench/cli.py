"""`offdiff bench speed`: the speed benchmark, printed as a table and written as JSON (and Markdown)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from offdiff.bench.plan import register as register_plan
from offdiff.errors import OffdiffError

MODES = ("eager", "compile")
GRAPHS_LEFT_OUT = ("mode 'graphs' (captured CUDA graphs) is left out: a training step is not one static graph "
                   "(LR schedules, step-dependent branches, generator draws; see offdiff/train/compile.py); "
                   "use 'compile'")


def _names(values: list[str]) -> list[str]:
    """`a,b c` -> [a, b, c], without duplicates."""
    names = [n for v in values for n in v.split(",") if n]
    return list(dict.fromkeys(names))


def _modes(values: list[str]) -> list[str]:
    modes = _names(values)
    if "graphs" in modes:
        raise OffdiffError(GRAPHS_LEFT_OUT)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise OffdiffError(f"unknown mode(s) {unknown or modes}; choose from {', '.join(MODES)}")
    return modes


def _loops(value: str | None) -> list[int]:
    """`--concurrent 2,4` -> [1, 2, 4]: one loop is always measured, as the baseline of the speed-up."""
    if value is None:
        return []
    try:
        loops = [int(v) for v in value.split(",") if v]
    except ValueError:
        loops = []
    if not loops or min(loops) < 1:
        raise OffdiffError(f"--concurrent takes numbers of loops >= 1, comma-separated (e.g. 2 or 1,2,4,8), "
                           f"got {value!r}")
    return sorted({1, *loops})


def _command(args: argparse.Namespace, algos: list[str], modes: list[str]) -> str:
    """The command line that measures this again, in a canonical form."""
    words = ["offdiff", "bench", "speed", "--algos", ",".join(algos), "--device", args.device,
             "--modes", ",".join(modes)]
    words += ["--quick"] if args.quick else []
    words += ["--threads", str(args.threads)] if args.threads is not None else []
    words += ["--reference", str(args.reference)] if args.reference is not None else []
    words += ["--default-malloc"] if args.default_malloc else []
    words += ["--concurrent", args.concurrent] if args.concurrent is not None else []
    words += ["--mps"] if args.mps else []
    return shlex.join(words + (["--out", str(args.out)] if args.out is not None else []))


def _progress(what: str) -> None:
    print(f"[bench] {what}", file=sys.stderr)


def _speed(args: argparse.Namespace) -> int:
    import torch

    from offdiff.bench.machine import describe_machine, load_average
    from offdiff.bench.report import load_references, rows, table, write
    from offdiff.bench.speed import ACT_DIM, FULL, OBS_DIM, QUICK, TASK, run_speed
    from offdiff.registry import get_algorithm, plugins
    from offdiff.runtime import keep_freed_memory, resolve_device
    from offdiff.train.compile import check_compile_available

    algos = _names(args.algos) if args.algos else list(plugins())  # default: every registered plugin
    modes, loops = _modes(args.modes), _loops(args.concurrent)
    if args.mps and not (loops and args.device.startswith("cuda")):
        raise OffdiffError("--mps runs concurrent loops through CUDA MPS: it needs --concurrent and --device cuda")
    references = load_references(args.reference) if args.reference is not None else None
    for name in algos:
        get_algorithm(name)  # an unknown name is a one-line error before anything runs
    if args.threads is not None:
        if args.threads < 1:
            raise OffdiffError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if "compile" in modes:
        check_compile_available(device)
    budget = QUICK if args.quick else FULL
    if not args.default_malloc:
        keep_freed_memory()  # as `offdiff train` does
    machine = describe_machine(device)
    failures: list[str] = []
    if loops:
        from offdiff.bench.concurrent import run_concurrent

        cores = os.cpu_count() or 1
        with _mps(args.mps):
            results, failures = run_concurrent(
                algos, modes, device, budget, loops, lambda k: args.threads or max(1, cores // k), _progress)
    else:
        results = run_speed(algos, modes, device, budget, progress=_progress)
    machine["load_average_end"] = load_average()
    payload = {
        "command": _command(args, algos, modes),
        "machine": machine,
        "settings": {"task": TASK, "obs_dim": OBS_DIM, "act_dim": ACT_DIM, "quick": args.quick,
                     "budget": dataclasses.asdict(budget), "algos": algos, "modes": modes,
                     **({"concurrent_loops": loops, "mps": args.mps} if loops else {})},
        "reference": str(args.reference) if args.reference is not None else "the issue's official figures",
        "results": rows(results, cpu=device.type == "cpu", references=references),
    }
    if loops:
        payload["failures"] = failures
    print(table(payload), end="")
    if args.out is not None:
        print(f"wrote {', '.join(map(str, write(args.out, payload)))}")
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return int(bool(failures))


@contextlib.contextmanager
def _mps(wanted: bool) -> Iterator[None]:
    """With `--mps`, a CUDA MPS daemon for the loops (spawned processes read its folders from the environment)."""
    if not wanted:
        yield
        return
    import tempfile

    from offdiff.harness.mps import cuda_mps

    with tempfile.TemporaryDirectory(prefix="offdiff-bench-") as logs, cuda_mps(Path(logs)) as env:
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `bench speed` and `bench plan` to the `offdiff` parser."""
    bench = subparsers.add_parser("bench", help="benchmarks: `offdiff bench speed`, `offdiff bench plan`")
    sub = bench.add_subparsers(dest="bench_command", required=True)
    p = sub.add_parser("speed", help="steps/s, actions/s, EDA alignment-set states/s and peak memory per algorithm",
                       description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", help="algorithms (space- or comma-separated; default: every "
                   "registered one)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--modes", nargs="+", default=["eager"], help="eager and/or compile (comma-separated)")
    p.add_argument("--quick", action="store_true", help="tiny repeats: checks that it runs, in seconds")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--reference", type=Path, help="JSON of reference figures measured on this machine (e.g. the "
                   "official code; see offdiff/bench/report.py), instead of the issue's")
    p.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc as it is, unlike `offdiff "
                   "train` (see offdiff/runtime.py): measures what that setting is worth")
    p.add_argument("--concurrent", metavar="K[,K...]", help="instead: aggregate training steps/s of K loops at "
                   "once on the device, each its own process (as a job with `concurrency: K`), and of 1 loop; "
                   "each loop gets --threads threads (default: cores // K)")
    p.add_argument("--mps", action="store_true", help="with --concurrent on CUDA: run the loops through CUDA MPS")
    p.add_argument("--out", type=Path, help="write the JSON here (and the table as Markdown next to it)")
    p.set_defaults(func=_speed)
    register_plan(sub)
