"""The `offdiff` command line: every command is registered here (`offdiff --help` lists them).

User mistakes (bad input, missing data, corrupt files) print one line `offdiff: error: ...` and exit 2;
nothing already written is lost.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from offdiff import __version__
from offdiff.analysis.cli import register as register_aggregate
from offdiff.bench.cli import register as register_bench
from offdiff.cli_style import finish, quiet_broken_pipe, table
from offdiff.collect.cli import register as register_collect
from offdiff.config import parse_assignments
from offdiff.errors import OffdiffError
from offdiff.eval.cli import register as register_eval
from offdiff.harness.cli import register as register_grid
from offdiff.records import Done
from offdiff.tracking import parse_log
from offdiff.tracking import register as register_export

DESCRIPTION = """A benchmark suite for diffusion-policy offline RL: train EDA, DTQL and Diffusion-QL (and plugins)
on Minari, D4RL HDF5 or toy datasets, run grids locally or on SLURM, and aggregate the runs into tables and plots.
`offdiff COMMAND --help` shows each command's options and examples."""


def _train(args: argparse.Namespace) -> int:
    from offdiff.train.runner import TrainRequest, plan, train

    protocol = {k: v for k, v in (("eval_episodes", args.eval_episodes), ("eval_every", args.eval_every),
                                  ("eval_envs", args.eval_envs), ("log_every", args.log_every),
                                  ("checkpoint_every", args.checkpoint_every)) if v is not None}
    request = TrainRequest(
        algo=args.algo, source=args.dataset, seed=args.seed, eval_env=args.eval_env,
        overrides=parse_assignments(args.set), protocol=protocol, steps=args.steps, device=args.device,
        runs_root=Path(args.runs_dir), compile=args.compile, task=args.task, ref_scores=args.ref_scores,
        keep=args.keep, log=parse_log(",".join(args.log)),
    )
    planned = plan(request)
    if args.dry_run:
        from offdiff.explain import describe_run

        print("\n".join(describe_run(planned)))
        return 0
    if planned.run_dir.is_done():
        print(f"already done (DONE marker present): {planned.run_dir.path}")
    _print_summary(Done.from_json(train(request, progress=not args.quiet), "the run's summary"))
    return 0


def _print_summary(done: Done) -> None:
    print(f"run: {done.run_dir}")
    if done.final_normalized_score is not None:
        print(
            f"normalized score (last evaluation, {done.episodes} episodes): "
            f"{done.final_normalized_score:.1f} ± {done.final_normalized_std:.1f}   "
            f"[return {done.final_return:.2f}]"
        )
        print(f"best over training (online model selection, optimistic): "
              f"{done.best_normalized_score_online_selection:.1f}")


def _algos(args: argparse.Namespace) -> int:
    from offdiff.registry import get_algorithm, plugins

    if args.name:
        from offdiff.explain import describe_algorithm
        from offdiff.train.runner import TrainRequest, plan

        planned = plan(TrainRequest(algo=args.name, source=args.dataset, eval_env=args.eval_env, task=args.task,
                                    ref_scores=args.ref_scores)) if args.dataset else None
        print("\n".join(describe_algorithm(get_algorithm(args.name), planned)))
        return 0

    rows = list(plugins().values())
    if not rows:
        raise OffdiffError("no algorithms registered; install offdiff with `pip install -e .`")
    width = max(len(r.name) for r in rows)
    for r in rows:
        print(f"{r.name:<{width}}  {r.target:<32} {r.package} {r.version}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from offdiff.data import sources

    if args.data_command == "list":
        rows = sources.list_local()
        if args.json:
            print("\n".join(json.dumps(row, default=str) for row in rows))
        elif not rows:
            print("no local datasets (MINARI_DATASETS_PATH, OFFDIFF_D4RL_PATH); built-in: toy:<name>, see "
                  "`offdiff data info`")
        else:
            print(table(["dataset", "eval env", "episodes", "steps", "MB", "reference scores"],
                        [[r["id"], r["env"] or "-", "-" if r["episodes"] is None else r["episodes"], r["steps"],
                          r["size_mb"], _ref(r["ref_scores"])]
                         for r in rows]))
    elif args.data_command == "info":
        info = sources.describe(args.source, args.eval_env)
        if args.json:
            print(json.dumps(info, indent=2, default=str))
        else:
            info["ref_scores"] = _ref(info["ref_scores"]) + (f" ({info.pop('ref_scores_error')})"
                                                             if "ref_scores_error" in info else "")
            print(table(["key", "value"], [[k, json.dumps(v, default=str) if isinstance(v, (dict, list)) else v]
                                           for k, v in info.items()]))
    elif args.data_command == "fetch":
        path = sources.fetch(args.dataset_id, timeout_s=args.timeout, expected_sha256=args.sha256)
        print(f"fetched {args.dataset_id} into {path}")
    return 0


def _ref(ref: dict | None) -> str:
    return f"{ref['min']:g} .. {ref['max']:g} ({ref['source']})" if ref else "none"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offdiff", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"offdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train one algorithm on one dataset with one seed (resumes; skips if DONE)")
    t.add_argument("--algo", required=True, help="a registered algorithm, see `offdiff algos`")
    t.add_argument("--dataset", required=True, help="minari:<id> | d4rl:<name> | hdf5:<path> | toy:<name>")
    t.add_argument("--task", help="the task whose preset applies (e.g. hopper-medium; `none`: the paper's defaults); "
                                  "default: derived from the dataset by the README's rules, and printed")
    t.add_argument("--ref-scores", metavar="MIN,MAX|d4rl",
                   help="reference scores for normalization; default: the dataset's own metadata, else D4RL's "
                        "for D4RL data, else an error (`d4rl` asks for D4RL's constants for the task)")
    t.add_argument("--seed", type=int, default=0, help="run seed; the sampler's and evaluation's seeds derive from it")
    t.add_argument("--steps", type=int, help="train every stage for this many steps (sets every step-budget key)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--eval-env", help="gymnasium id of the evaluation env (default: the dataset's recorded env; "
                                      "-v4 for D4RL locomotion; required for other hdf5: files)")
    t.add_argument("--eval-episodes", type=int,
                   help="episodes per evaluation (default: 10 on Gym locomotion, 100 elsewhere)")
    t.add_argument("--eval-every", type=int, help="evaluate every N steps (and at the end of each stage)")
    t.add_argument("--eval-envs", type=int, help="vector envs used for evaluation")
    t.add_argument("--log-every", type=int, help="read and log metrics every N steps")
    t.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (and at each stage end)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile each step (same math, float-rounding differences); default: on for runs of "
                        ">= 50k steps where the device can compile (see README, Speed)")
    t.add_argument("--runs-dir", default="runs", help="run folders go under RUNS_DIR/train/")
    t.add_argument("--keep", choices=("all", "final"), default="all",
                   help="final: once done, replace checkpoint.pt by weights.pt, the final weights only (no resume "
                        "state; offdiff eval and load_run use either)")
    t.add_argument("--log", nargs="+", default=["tensorboard"], metavar="TRACKER",
                   help="live experiment tracking, a comma- or space-separated list of tensorboard (event files in "
                        "the run folder's tensorboard/) and wandb (pip install 'offdiff[wandb]'; offline unless "
                        "WANDB_MODE), or none (default: tensorboard)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--dry-run", action="store_true",
                   help="print the run folder, resolved config, protocol and stages; train nothing, write nothing")
    t.set_defaults(func=_train)

    a = sub.add_parser("algos", help="list registered algorithms; with NAME, every config key documented")
    a.add_argument("name", nargs="?", help="an algorithm: print each config key's type, default, range and doc")
    a.add_argument("--dataset", help="also the task's preset and the resolved config for this dataset source")
    a.add_argument("--eval-env", help="gymnasium id of the evaluation env (for hdf5: datasets)")
    a.add_argument("--task", help="the task whose preset applies, as for train (`none`: the paper's defaults)")
    a.add_argument("--ref-scores", metavar="MIN,MAX|d4rl", help="reference scores, as for train")
    a.set_defaults(func=_algos)

    d = sub.add_parser("data", help="local datasets: list, info, fetch, collect")
    dsub = d.add_subparsers(dest="data_command", required=True)
    listing = dsub.add_parser("list", help="datasets in the local Minari store")
    listing.add_argument("--json", action="store_true", help="one JSON object per dataset instead of the table")
    info = dsub.add_parser("info", help="shape, size, env and reference scores of a dataset source")
    info.add_argument("source", help="minari:<id> | d4rl:<name> | hdf5:<path> | toy:<name>")
    info.add_argument("--eval-env", help="gymnasium id of the evaluation env (for hdf5: files without one)")
    info.add_argument("--json", action="store_true", help="print JSON instead of the table")
    fetch = dsub.add_parser("fetch", help="download d4rl:<name> or a Minari dataset (login node; never done by "
                                          "training)")
    fetch.add_argument("dataset_id", metavar="DATASET",
                       help="d4rl:<name> (e.g. d4rl:hopper-medium-v2) or a Minari id (e.g. D4RL/antmaze/umaze-v1)")
    fetch.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    fetch.add_argument("--sha256", help="the expected SHA-256 of a d4rl: file (D4RL publishes none; offdiff "
                                        "records the one it computed beside the file)")
    register_collect(dsub)
    d.set_defaults(func=_data)
    register_eval(sub)
    register_export(sub)
    register_aggregate(sub)
    register_grid(sub)
    register_bench(sub)
    return finish(parser)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:  # `offdiff ... | head`: the reader has all it wanted
        return quiet_broken_pipe()
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("offdiff: interrupted; a run resumes from its last checkpoint when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
