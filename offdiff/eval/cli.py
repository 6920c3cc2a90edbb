"""`offdiff eval RUN_DIR`: evaluate a trained run again, optionally rendering one episode to a video."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """examples:
  offdiff eval runs/train/dql/toy-four_corners/1a2b3c4d5e/seed_0                 # repeats the last evaluation
  offdiff eval RUN_DIR --episodes 100 --seed 7                                    # other episodes
  MUJOCO_GL=egl offdiff eval RUN_DIR --video hopper.gif                           # and one rendered episode
  offdiff eval RUN_DIR --policy behavior --episodes 30 --seed 7                   # EDA's behaviour model alone
"""


def _eval(args: argparse.Namespace) -> int:
    from offdiff.errors import OffdiffError
    from offdiff.eval.load import load_run

    if args.policy and args.video:
        raise OffdiffError("--video renders the final policy; drop --policy to record it")
    trained = load_run(Path(args.run_dir), device=args.device)
    manifest = trained.manifest
    stage = manifest.stages[trained.position[0]]["name"]
    where = "final weights" if trained.finished else "NOT FINISHED: weights of the last checkpoint"
    print(f"run: {trained.path} ({manifest.algorithm} on {manifest.dataset['source']}, "
          f"{where}, {stage} step {trained.position[1]})" + (f"; policy: {args.policy}" if args.policy else ""))
    result = trained.evaluate(episodes=args.episodes, num_envs=args.envs, seed=args.seed, policy=args.policy)
    if args.json:
        print(json.dumps(result.summary))
    else:
        scores = result.scores
        print(f"normalized score ({scores.episodes} episodes): {scores.normalized_mean:.1f} ± "
              f"{scores.normalized_std:.1f}   [return {scores.mean_return:.2f}]")
    if args.video:
        frames = trained.record_video(Path(args.video), seed=args.seed)
        print(f"video: {args.video} ({frames} frames, one episode)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `offdiff eval` to the top-level parser's subcommands."""
    p = subparsers.add_parser(
        "eval", help="evaluate a trained run again (normalized score; optional video)", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load a run folder's algorithm and weights (offdiff.load_run) and evaluate it with the suite's "
                    "evaluation. With the defaults it repeats the run's last evaluation: same episodes, reset seeds "
                    "and acting generator, so on CPU the same returns.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (with manifest.json)")
    p.add_argument("--episodes", "--eval-episodes", type=int, help="episodes to evaluate (default: the run's protocol)")
    p.add_argument("--envs", "--eval-envs", type=int, help="vector envs (default: the run's protocol)")
    p.add_argument("--seed", type=int, help="reset seed of the first episode (default: the run's eval seed)")
    p.add_argument("--policy", metavar="NAME", help="a diagnostic policy the run's stages declare, e.g. EDA's behavior "
                                                    "(its behaviour model acting alone), in place of the final policy")
    p.add_argument("--video", metavar="FILE", help="also render one episode to FILE (.gif, or .mp4 with "
                                                   "imageio-ffmpeg); needs a renderable env (MuJoCo tasks)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (per-episode returns and seeds)")
    p.set_defaults(func=_eval)
