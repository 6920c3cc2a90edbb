"""Evaluate both sides of a fidelity comparison again, on more episodes, so that it decides on the policies.

    python benchmarks/fidelity/evaluate_again.py runs/fidelity --release dql \\
        --checkout ~/src/Diffusion-Policies-for-Offline-RL --episodes 100 --out results/fidelity/evaluated_again.csv
    python benchmarks/fidelity/decide.py results/fidelity/evaluated_again.csv

A run's headline is its last evaluation, 10 episodes in the fidelity runs, so part of the spread between seeds,
and of the difference between the sides, is evaluation noise. This reloads every finished run of the release's
pair under the folder (offdiff's through `load_run`; the release's through its adapter, built from your
checkout, then given the run's saved weights) and evaluates its final weights on `--episodes` episodes. The
reset seeds and the acting generator come from the run's evaluation seed, which both sides of a training seed
share, so each pair plays the same episodes. Output: a scores CSV with one row per run, its final evaluation
replaced by this one, which `decide.py` reads as it reads `aggregate`'s.

`--policy behavior` scores a diagnostic policy instead (EDA: its behaviour model acting alone), which both sides
declare, on the same new episodes: whether the two sides' behaviour models differ, beside their final scores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `fidelity` is benchmarks/fidelity

from fidelity.adapter import ReleaseAlgorithm  # noqa: E402
from fidelity.adapters import ADAPTERS  # noqa: E402
from fidelity.harness import adapter_for, official_label  # noqa: E402
from fidelity.release import imported, open_checkout  # noqa: E402
from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec  # noqa: E402
from offdiff.analysis.collect import Run, find_run_dirs, labels, read_run, run_rows, score_columns  # noqa: E402
from offdiff.analysis.scores import to_csv_bytes  # noqa: E402
from offdiff.errors import OffdiffError  # noqa: E402
from offdiff.eval.load import TrainedRun, build_plugin, load_run  # noqa: E402
from offdiff.io import atomic_write_bytes  # noqa: E402
from offdiff.records import RunDir  # noqa: E402
from offdiff.registry import get_algorithm  # noqa: E402
from offdiff.runtime import derive_seed  # noqa: E402
from offdiff.train.runner import TrainRequest  # noqa: E402

PURPOSE = "evaluate-again"  # reset seeds from derive_seed(the run's eval seed, PURPOSE): the same on both sides


def finished_pair_runs(root: Path, release: str) -> list[Run]:
    """The finished runs under `root` of the release's offdiff algorithm and of its official twin."""
    names = {adapter_for(release).algo, official_label(release)}
    runs = [run for run in map(read_run, find_run_dirs([root])) if run.algo in names and run.done]
    if {run.algo for run in runs} != names:
        raise OffdiffError(f"{root} holds no finished runs of both {' and '.join(sorted(names))}")
    return runs


def load_official(path: Path, release: str, device: str) -> TrainedRun:
    """The official twin at `path` with its saved weights: its class bound as the harness bound it (the run's
    source, eval env and reference scores), the release's networks built from the checkout, then loaded."""
    adapter = adapter_for(release)
    manifest = RunDir(path).read_manifest()
    data, ref = manifest.dataset, manifest.dataset["ref_scores"]
    request = TrainRequest(algo=adapter.algo, source=data["source"], seed=manifest.seed, eval_env=data["eval_env"],
                           ref_scores=f"{ref['min']!r},{ref['max']!r}")
    cls = ReleaseAlgorithm.bind(adapter, get_algorithm(adapter.algo), request)

    def build(cls: type[Algorithm], config: AlgorithmConfig, spec: EnvSpec, device: torch.device,
              seed: int) -> Algorithm:
        algorithm = build_plugin(cls, config, spec, device, seed)
        algorithm.build_release()  # type: ignore[attr-defined]
        return algorithm

    return load_run(path, device, algorithm_cls=cls, build=build)


def evaluate_again(root: Path, release: str, checkout: Path, episodes: int, any_commit: bool = False,
                   device: str = "cpu", policy: str | None = None) -> list[dict[str, Any]]:
    """One scores-CSV row per finished run of the pair under `root`, scored on `episodes` new episodes (of the final
    policy, or of the diagnostic policy `policy`)."""
    if episodes < 1:
        raise OffdiffError(f"--episodes must be at least 1, got {episodes}")
    runs = finished_pair_runs(root, release)
    label_of = labels(runs)
    official = official_label(release)
    opened = open_checkout(checkout, adapter_for(release).commit, any_commit)
    rows = []
    with imported(opened):
        for run in sorted(runs, key=lambda r: (r.dataset, r.seed, r.algo)):
            trained = load_official(run.path, release, device) if run.algo == official else load_run(run.path, device)
            before = run.evals[-1].scores
            result = trained.evaluate(episodes, seed=derive_seed(trained.manifest.eval_seed, PURPOSE), policy=policy)
            print(f"[again] {run.algo} {run.dataset} seed {run.seed}{f' ({policy})' if policy else ''}: "
                  f"{result.normalized.mean():.2f} over {episodes} episodes ({'the final policy' if policy else 'its'}"
                  f" last evaluation: {before.normalized_mean:.2f} over {before.episodes})", flush=True)
            last = run_rows(run, label_of[run.path])[-1]
            rows.append({**last, **score_columns(result.scores)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="evaluate_again.py", description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="the folder of the comparison's runs, e.g. runs/fidelity")
    p.add_argument("--release", required=True, choices=sorted(ADAPTERS))
    p.add_argument("--checkout", required=True, type=Path, help="your clone of the release the runs were made with")
    p.add_argument("--any-commit", action="store_true", help="accept a checkout at another commit")
    p.add_argument("--episodes", type=int, default=100, help="episodes per run (default: 100)")
    p.add_argument("--policy", metavar="NAME", help="a diagnostic policy both sides declare (EDA: behavior), "
                                                    "scored in place of the final policy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True, help="the scores CSV to write")
    args = p.parse_args(argv)
    try:
        rows = evaluate_again(args.runs, args.release, args.checkout, args.episodes, args.any_commit, args.device,
                              args.policy)
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2
    atomic_write_bytes(args.out, to_csv_bytes(rows))
    print(f"[again] {len(rows)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
