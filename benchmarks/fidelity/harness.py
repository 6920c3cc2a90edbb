"""The shared part: plan an official run beside its offdiff twin, and run it through offdiff's own runner.

`plan_pair` resolves ONE offdiff request (algorithm, data source, seed, --steps, --set, protocol, task) into
the offdiff run and its official twin. The twin has the same config, stages, protocol, dataset and seed, so
the runner gives it the same data, the same budget and the same evaluation (envs, episodes, reset seeds
derived from the seed); its folder sits beside the offdiff run's, under `<algo>-official` with the same
config hash: `runs/<grid>/dtql-official/<dataset>/<hash>/seed_<s>/`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from fidelity.adapter import Adapter, ReleaseAlgorithm
from fidelity.adapters import ADAPTERS
from fidelity.presets import compare_preset
from fidelity.presets import describe as describe_check
from fidelity.release import Checkout, imported, open_checkout
from offdiff.errors import OffdiffError
from offdiff.records import Manifest, RunDir
from offdiff.registry import get_algorithm
from offdiff.runtime import resolve_device
from offdiff.train.runner import PlannedRun, Trainer, TrainRequest, plan


def add_run_arguments(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The options that define a pair's run, shared by run.py and same_draws.py; `sweep` adds `--seeds`."""
    parser.add_argument("--release", required=True, choices=sorted(ADAPTERS))
    parser.add_argument("--checkout", required=True, type=Path, help="your clone of the release, at its pinned commit")
    parser.add_argument("--any-commit", action="store_true", help="accept a checkout at another commit (recorded)")
    parser.add_argument("--dataset", required=True, help="any offdiff data source, e.g. minari:local/hopper/medium-v0")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0)
    if sweep:
        seeds.add_argument("--seeds", help="several seeds, e.g. 0-9 or 0,2,5: each run of each side in its own "
                           "process, --parallel at a time, logs under <runs-dir>/<grid>/_logs/")
    parser.add_argument("--steps", type=int, help="every stage's step budget, on both sides (as `offdiff train "
                        "--steps`)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, both sides")
    parser.add_argument("--task", help="the task whose preset applies (as `offdiff train --task`)")
    parser.add_argument("--eval-env", help="evaluation env (as `offdiff train --eval-env`)")
    parser.add_argument("--ref-scores", help="MIN,MAX or d4rl (as `offdiff train --ref-scores`)")


def official_label(release: str) -> str:
    return f"{release}-official"


def adapter_for(release: str) -> type:
    if release not in ADAPTERS:
        raise OffdiffError(f"unknown --release {release!r}; the harness has adapters for {', '.join(ADAPTERS)}")
    return ADAPTERS[release]


def plan_pair(release: str, request: TrainRequest) -> tuple[PlannedRun, PlannedRun]:
    """(the offdiff run, its official twin) for `request`, whose `algo` is replaced by the release's plugin."""
    adapter = adapter_for(release)
    request = dataclasses.replace(request, algo=adapter.algo, compile=False)
    mine = plan(request)
    label = official_label(release)
    root = Path(request.runs_root) / request.grid
    path = root / label / mine.run_dir.path.relative_to(root / adapter.algo)
    cls = ReleaseAlgorithm.bind(adapter, get_algorithm(adapter.algo), request)
    twin = dataclasses.replace(mine, request=dataclasses.replace(request, algo=label), cls=cls, run_dir=RunDir(path))
    return mine, twin


class ReleaseTrainer(Trainer):
    """offdiff's runner, with the release's checkout in the manifest and its modules importable while it runs."""

    def __init__(self, planned: PlannedRun, checkout: Checkout, preset_check: dict[str, Any], progress: bool = True):
        super().__init__(planned, progress=progress)
        self.checkout, self.preset_check = checkout, preset_check

    def _manifest(self) -> Manifest:
        adapter = self.p.cls.adapter_cls  # type: ignore[attr-defined]
        manifest = super()._manifest()
        return dataclasses.replace(manifest, provenance={**manifest.provenance, "release": {
            "name": adapter.release, "repository": adapter.repository, "pinned_commit": adapter.commit,
            "compared_with": adapter.algo, **self.checkout.describe(), "preset_check": self.preset_check}})

    def run_all(self) -> dict[str, Any]:
        with imported(self.checkout):
            return super().run_all()


def check_checkout(adapter: type[Adapter], checkout: Checkout) -> None:
    """The adapter's checks of the checkout's code (inside `imported`), a failed import as one line."""
    try:
        adapter.check_checkout(checkout)
    except ImportError as exc:
        raise OffdiffError(f"--checkout {checkout.path}: not the {adapter.release} release, or its requirements are "
                           f"missing ({exc}); see benchmarks/fidelity/README.md") from None


def check_official(release: str, checkout_path: Path, request: TrainRequest, any_commit: bool = False
                   ) -> tuple[PlannedRun, Checkout, dict[str, Any]]:
    """Every check of an official run of `request`, before anything is written: (its twin, the checkout, the
    preset check, which is printed)."""
    adapter = adapter_for(release)
    _, twin = plan_pair(release, request)
    adapter.check_config(twin.config, twin.choice.task)
    if adapter.needs_cuda and resolve_device(request.device).type != "cuda":
        raise OffdiffError(f"the {release} release hard-codes CUDA; run it on a GPU (--device cuda)")
    checkout = open_checkout(checkout_path, adapter.commit, any_commit)
    with imported(checkout):
        check_checkout(adapter, checkout)
    task = twin.choice.task
    check = compare_preset(adapter, checkout, twin.cls.plugin, task)  # type: ignore[attr-defined]
    print(f"[{official_label(release)}] {describe_check(check, task)}", flush=True)
    return twin, checkout, check


def run_official(release: str, checkout_path: Path, request: TrainRequest, any_commit: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Train (or skip, if DONE) the official twin of `request`; returns its summary. Every check comes first."""
    twin, checkout, check = check_official(release, checkout_path, request, any_commit)
    return ReleaseTrainer(twin, checkout, check, progress=progress).run_all()
