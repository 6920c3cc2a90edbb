"""`offdiff data collect ENV ...`: the command-line face of `offdiff.collect.collect`."""

from __future__ import annotations

import argparse
import sys

from offdiff.collect import mkl_branch
from offdiff.collect.envs import DEFAULT_BUDGETS, FALLBACK_BUDGET, KINDS
from offdiff.config import parse_assignments


def _collect(args: argparse.Namespace) -> int:
    mkl_branch.request_compatible()  # before torch runs: MKL's kernels not chosen by CPU
    from offdiff.collect.collection import collect, request_from_args  # torch: only when collecting

    request = request_from_args(
        args.env, args.kinds, parse_assignments(args.sac), budget=args.budget, episodes=args.episodes,
        transitions=args.transitions, seed=args.seed, namespace=args.namespace, device=args.device,
        overwrite=args.overwrite,
    )
    for item in collect(request, progress=not args.quiet, log=lambda message: print(message, file=sys.stderr)):
        print(f"{item.status}: {item.dataset_id}  ({item.path})")
    return 0


def register(data_commands: argparse._SubParsersAction) -> None:
    """Add `collect` to the `offdiff data` subcommands."""
    budgets = ", ".join(f"{env} {steps:,}" for env, steps in DEFAULT_BUDGETS.items())
    c = data_commands.add_parser(
        "collect", help="make D4RL-style datasets (SAC behaviour policies) for a gymnasium MuJoCo task, locally",
        description="Train SAC on ENV, then write D4RL-style datasets into the local Minari store as "
                    "<namespace>/<env>/<kind>-v0. Resumes when rerun; an existing dataset is never overwritten "
                    "unless --overwrite.",
    )
    c.add_argument("env", metavar="ENV",
                   help="gymnasium env id, e.g. Hopper-v5, HalfCheetah-v5, Walker2d-v5, InvertedDoublePendulum-v5")
    c.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {','.join(KINDS)} (default: all)")
    c.add_argument("--budget", type=int, help=f"SAC steps (default: {budgets}; else {FALLBACK_BUDGET:,})")
    size = c.add_mutually_exclusive_group()
    size.add_argument("--episodes", type=int, help="whole episodes per random/medium/expert dataset")
    size.add_argument("--transitions", type=int, help="steps per random/medium/expert dataset (default 1,000,000)")
    c.add_argument("--seed", type=int, default=0, help="seed of SAC, the rollouts and the environments")
    c.add_argument("--namespace", default="local", help="dataset ids <namespace>/<env>/<kind>-v0")
    c.add_argument("--device", default="cpu", help="cpu (default: bit-reproducible) | cuda | cuda:N | auto")
    c.add_argument("--overwrite", action="store_true", help="replace datasets that already exist")
    c.add_argument("--set", "--sac", dest="sac", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SAC setting (hidden, layers, batch_size, lr, learning_starts, snapshots, ...), "
                        "as `train --set` does a config key; --sac is the older spelling")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=_collect)
