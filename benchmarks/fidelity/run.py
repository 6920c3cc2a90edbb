"""Run an official release (from your checkout) as the twin of an offdiff run: same data, budget and evaluation.

    python benchmarks/fidelity/run.py --release dtql --checkout ~/src/Diffusion_Trusted_Q_Learning \\
        --dataset minari:local/hopper/medium-v0 --seed 0 --steps 20000 --also-offdiff

writes runs/fidelity/dtql-official/<dataset>/<hash>/seed_0/ (and, with --also-offdiff, runs/fidelity/dtql/...),
which `offdiff aggregate runs/fidelity --out DIR` compares. Many seeds, both sides, two runs at a time:

    python benchmarks/fidelity/run.py ... --seeds 0-9 --side both --parallel 2

See benchmarks/fidelity/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `fidelity` is benchmarks/fidelity

from fidelity.adapters import ADAPTERS  # noqa: E402
from fidelity.harness import add_run_arguments, check_official, plan_pair, run_official  # noqa: E402
from fidelity.lanes import LaneRun, check_resumable, parse_seeds, run_lanes, summary  # noqa: E402
from offdiff.config import parse_assignments  # noqa: E402
from offdiff.errors import OffdiffError  # noqa: E402
from offdiff.train.runner import TrainRequest, train  # noqa: E402

PROTOCOL = ("eval_episodes", "eval_every", "eval_envs", "log_every", "checkpoint_every")
SIDES = {"official": ("official",), "offdiff": ("offdiff",), "both": ("official", "offdiff")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    add_run_arguments(p, sweep=True)
    for name in PROTOCOL:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, dest=name)
    p.add_argument("--device", default="auto")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--grid", default="fidelity", help="the folder under --runs-dir (default: fidelity)")
    sides = p.add_mutually_exclusive_group()
    sides.add_argument("--side", choices=sorted(SIDES), default="official",
                       help="which side(s) of the pair to train (default: official; each skipped if DONE)")
    sides.add_argument("--also-offdiff", action="store_true", help="the same as --side both")
    p.add_argument("--parallel", type=int, default=1, help="with --seeds: runs at a time (default 1)")
    p.add_argument("--threads", type=int, default=1, help="with --seeds: torch threads per run (default 1)")
    p.add_argument("--quiet", action="store_true")
    return p


def _request(args: argparse.Namespace, seed: int) -> TrainRequest:
    return TrainRequest(
        algo=ADAPTERS[args.release].algo, source=args.dataset, seed=seed, eval_env=args.eval_env,
        overrides=parse_assignments(args.set), steps=args.steps, device=args.device, runs_root=args.runs_dir,
        grid=args.grid, compile=False, task=args.task, ref_scores=args.ref_scores,
        protocol={k: getattr(args, k) for k in PROTOCOL if getattr(args, k) is not None},
    )


def _sides(args: argparse.Namespace) -> tuple[str, ...]:
    return SIDES["both" if args.also_offdiff else args.side]


def _run_one(args: argparse.Namespace) -> int:
    request = _request(args, args.seed)
    if "official" in _sides(args):
        summary = run_official(args.release, args.checkout, request, args.any_commit, progress=not args.quiet)
        print(f"[{args.release}-official] {summary}")
    else:  # the offdiff side alone is still one of a pair: the same checks of config and checkout first
        check_official(args.release, args.checkout, request, args.any_commit)
    if "offdiff" in _sides(args):
        print(f"[{request.algo}] {train(request, progress=not args.quiet)}")
    return 0


def child_argv(parser: argparse.ArgumentParser, args: argparse.Namespace, seed: int, side: str) -> list[str]:
    """The command line of one run of a sweep: `args` with one seed and one side, and no sweep options."""
    values = {**vars(args), "seed": seed, "side": side, "also_offdiff": False, "seeds": None, "parallel": 1,
              "threads": 1}
    argv: list[str] = []
    for action in parser._actions:
        value = values.get(action.dest)
        if not action.option_strings or action.dest == "help" or value is None or value == action.default:
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:
            argv.append(flag)
        else:
            for item in value if isinstance(value, list) else [value]:
                argv += [flag, str(item)]
    return argv


def _sweep(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    if args.parallel < 1 or args.threads < 1:
        raise OffdiffError(f"--parallel and --threads must be >= 1, got {args.parallel} and {args.threads}")
    check_official(args.release, args.checkout, _request(args, seeds[0]), args.any_commit)  # every check, once
    runs = []
    for side in _sides(args):  # the official side first: it is the slower one
        for seed in seeds:
            mine, twin = plan_pair(args.release, _request(args, seed))
            planned = twin if side == "official" else mine
            dataset = planned.run_dir.path.parents[1].name
            log = Path(args.runs_dir) / args.grid / "_logs" / f"{planned.request.algo}_{dataset}_seed{seed}.log"
            command = (sys.executable, str(Path(__file__).resolve()), *child_argv(parser, args, seed, side))
            runs.append(LaneRun(planned.request.algo, seed, planned.run_dir, command, log, side == "official"))
    check_resumable(runs)
    outcomes = run_lanes(runs, args.parallel, args.threads)
    print(summary(outcomes), flush=True)
    return 0 if all(o.state in ("done", "skipped") for o in outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.seeds is not None:
            return _sweep(parser, args)
        if (args.parallel, args.threads) != (1, 1):
            raise OffdiffError("--parallel and --threads are for --seeds (several runs); one run uses the "
                               "process's own threads (OMP_NUM_THREADS)")
        return _run_one(args)
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
