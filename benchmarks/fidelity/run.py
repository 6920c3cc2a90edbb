"""Run an official release (from your checkout) as the twin of an offdiff run: same data, budget and evaluation.

    python benchmarks/fidelity/run.py --release dtql --checkout ~/src/Diffusion_Trusted_Q_Learning \\
        --dataset minari:local/hopper/medium-v0 --seed 0 --steps 20000 --also-offdiff

writes runs/fidelity/dtql-official/<dataset>/<hash>/seed_0/ (and, with --also-offdiff, runs/fidelity/dtql/...),
which `offdiff aggregate runs/fidelity --out DIR` compares. See benchmarks/fidelity/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `fidelity` is benchmarks/fidelity

from fidelity.adapters import ADAPTERS  # noqa: E402
from fidelity.harness import add_run_arguments, run_official  # noqa: E402
from offdiff.config import parse_assignments  # noqa: E402
from offdiff.errors import OffdiffError  # noqa: E402
from offdiff.train.runner import TrainRequest, train  # noqa: E402

PROTOCOL = ("eval_episodes", "eval_every", "eval_envs", "log_every", "checkpoint_every")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    add_run_arguments(p)
    for name in PROTOCOL:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, dest=name)
    p.add_argument("--device", default="auto")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--grid", default="fidelity", help="the folder under --runs-dir (default: fidelity)")
    p.add_argument("--also-offdiff", action="store_true", help="then train the offdiff twin too (skipped if DONE)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = TrainRequest(
        algo=ADAPTERS[args.release].algo, source=args.dataset, seed=args.seed, eval_env=args.eval_env,
        overrides=parse_assignments(args.set), steps=args.steps, device=args.device, runs_root=args.runs_dir,
        grid=args.grid, compile=False, task=args.task, ref_scores=args.ref_scores,
        protocol={k: getattr(args, k) for k in PROTOCOL if getattr(args, k) is not None},
    )
    try:
        summary = run_official(args.release, args.checkout, request, args.any_commit, progress=not args.quiet)
        print(f"[{args.release}-official] {summary}")
        if args.also_offdiff:
            print(f"[{request.algo}] {train(request, progress=not args.quiet)}")
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
