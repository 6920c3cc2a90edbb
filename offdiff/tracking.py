"""Experiment tracking: a run's metrics and evaluations mirrored to TensorBoard (and Weights & Biases).

The JSONL files of the run folder stay the source of truth; a tracker only mirrors their rows. Tags:
`train/<stage>/<metric>` for every logged training metric (and steps/s), `eval/normalized_score`,
`eval/normalized_std` and `eval/return` for every evaluation. The step is the run's global step: stages
follow one another, so a step of the second stage counts after all of the first's.

- Live (`offdiff train --log tensorboard`, the default): event files in `<run>/tensorboard/`. When a run
  starts or resumes, that folder is written afresh from the (rewound) JSONL, then training appends to it,
  so after a kill it never holds rows the run will write again.
- `--log wandb` (the optional extra `pip install offdiff[wandb]`): one W&B run per offdiff run, in
  `<run>/wandb/`, offline unless `WANDB_MODE` says otherwise; `wandb sync` uploads it later.
- `offdiff export RUNS --to tensorboard|wandb` replays finished (or unfinished) run folders after the fact.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offdiff.errors import OffdiffError

if TYPE_CHECKING:  # imported where used: `offdiff --help` registers `export` without importing torch
    from offdiff.train.run_dir import RunDir

TRACKERS = ("tensorboard", "wandb")
_NOT_METRICS = {"stage", "stage_index", "step", "event", "artifact", "steps_averaged"}


def parse_log(value: str | Sequence[str]) -> tuple[str, ...]:
    """`tensorboard,wandb` (or a list) -> the trackers; `none` -> ()."""
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or not names:
        raise OffdiffError(f"--log {value!r}: use a comma list of {', '.join(TRACKERS)}, or none")
    return tuple(dict.fromkeys(names))


def scalars(kind: str, row: dict[str, Any]) -> dict[str, float]:
    """The tags and values one JSONL row (of metrics.jsonl or evals.jsonl) becomes."""
    if kind == "evals":
        return {"eval/normalized_score": row["normalized_mean"], "eval/normalized_std": row["normalized_std"],
                "eval/return": row["mean_return"]}
    return {f"train/{row['stage']}/{k}": float(v) for k, v in row.items()
            if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class _TensorBoard:
    def __init__(self, logdir: Path):
        from torch.utils.tensorboard import SummaryWriter

        shutil.rmtree(logdir, ignore_errors=True)  # written afresh from the JSONL logs
        self.writer = SummaryWriter(log_dir=str(logdir), flush_secs=30)

    def write(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, folder: Path, name: str, manifest: dict[str, Any], project: str):
        try:
            import wandb
        except ImportError:
            raise OffdiffError("--log wandb needs the optional extra: pip install 'offdiff[wandb]'") from None
        mode = os.environ.get("WANDB_MODE", "offline")
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", project), name=name, dir=str(folder), mode=mode,
            id=hashlib.sha256(name.encode()).hexdigest()[:16], resume="allow", reinit="create_new",
            group=manifest["algorithm"], config={"algorithm": manifest["algorithm"], "seed": manifest["seed"],
                                                 "dataset": manifest["dataset"]["source"], **manifest["config"]},
        )

    def write(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class Tracker:
    """Mirrors a run's rows to its sinks at the run's global step."""

    def __init__(self, sinks: Sequence[Any], manifest: dict[str, Any]):
        self.sinks = list(sinks)
        steps = [s["steps"] for s in manifest["stages"]]
        self.offsets = [sum(steps[:i]) for i in range(len(steps))]

    def log(self, kind: str, row: dict[str, Any]) -> None:
        if not self.sinks:
            return
        values = scalars(kind, row)
        if values:
            step = self.offsets[row["stage_index"]] + row["step"]
            for sink in self.sinks:
                sink.write(step, values)

    def replay(self, run: RunDir) -> None:
        """Every row of the run's JSONL logs, in the order of the global step (W&B needs steps in order)."""
        from offdiff.train.run_dir import read_jsonl

        rows = [(kind, row) for kind, path in (("metrics", run.metrics), ("evals", run.evals))
                for row in read_jsonl(path)]
        for kind, row in sorted(rows, key=lambda kr: (kr[1]["stage_index"], kr[1]["step"])):
            self.log(kind, row)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def open_tracker(names: Iterable[str], run: RunDir, manifest: dict[str, Any], name: str) -> Tracker:
    """A live tracker for a run that starts or resumes: TensorBoard rewritten from the JSONL logs, then appended."""
    sinks: list[Any] = []
    if "tensorboard" in names and not tensorboard_available():  # a dependency of offdiff: a broken install
        print("[offdiff] tensorboard is not installed: no TensorBoard logging (pip install tensorboard; "
              "--log none silences this)", file=sys.stderr)
    elif "tensorboard" in names:
        board = _TensorBoard(run.path / "tensorboard")
        Tracker([board], manifest).replay(run)  # W&B is not rewound: it keeps what it had
        sinks.append(board)
    if "wandb" in names:
        sinks.append(_Wandb(run.path, name, manifest, project="offdiff"))
    return Tracker(sinks, manifest)


def run_folders(root: Path) -> list[Path]:
    """Every run folder (with a manifest) under `root`, or `root` itself; shared caches and records skipped."""
    root = Path(root)
    if (root / "manifest.json").exists():
        return [root]
    found = sorted(p.parent for p in root.rglob("manifest.json")
                   if not {"_cache", "_harness"} & set(p.relative_to(root).parts))
    if not found:
        raise OffdiffError(f"no run folders (with manifest.json) under {root}")
    return found


def export(root: Path, to: str, out: Path, project: str = "offdiff") -> list[Path]:
    """Replay the run folders under `root` into TensorBoard event files (out/<run path>/) or W&B runs (in out/)."""
    from offdiff.train.run_dir import RunDir

    if to not in TRACKERS:
        raise OffdiffError(f"--to {to!r}: choose from {', '.join(TRACKERS)}")
    if to == "tensorboard" and not tensorboard_available():
        raise OffdiffError("exporting to TensorBoard needs the tensorboard package: pip install tensorboard")
    written = []
    folders = run_folders(root)
    base = Path(root).parent if folders == [Path(root)] else Path(root)
    for folder in folders:
        run = RunDir(folder)
        manifest = json.loads(run.manifest.read_text())
        name = folder.relative_to(base).as_posix()
        sink = _TensorBoard(Path(out) / name) if to == "tensorboard" else _Wandb(Path(out), name, manifest, project)
        tracker = Tracker([sink], manifest)
        tracker.replay(run)
        tracker.close()
        written.append(Path(out) / name if to == "tensorboard" else Path(out))
        print(f"exported {name}", file=sys.stderr)
    return written


EXPORT_EPILOG = """examples:
  offdiff export runs/quickstart --to tensorboard --out tensorboard && tensorboard --logdir tensorboard
  offdiff export runs/quickstart/dql --to wandb --out wandb-export     # offline W&B runs; then `wandb sync`
"""


def _export(args: argparse.Namespace) -> int:
    written = export(Path(args.runs), args.to, Path(args.out), project=args.project)
    if args.to == "tensorboard":
        print(f"{len(written)} runs written as TensorBoard event files under {args.out}; "
              f"view them with: tensorboard --logdir {args.out}")
    else:
        mode = os.environ.get("WANDB_MODE", "offline")
        print(f"{len(written)} runs written as W&B runs under {args.out}/wandb (mode {mode}); "
              f"upload offline ones with: wandb sync {args.out}/wandb/offline-run-*")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `offdiff export` to the top-level parser's subcommands."""
    p = subparsers.add_parser(
        "export", help="replay run folders into TensorBoard or Weights & Biases", epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay the metrics.jsonl and evals.jsonl of every run folder under RUNS (the source of truth) "
                    "into TensorBoard event files or W&B runs, e.g. on a login node after a grid.")
    p.add_argument("runs", metavar="RUNS", help="a run folder or any folder above run folders, e.g. runs/quickstart")
    p.add_argument("--to", required=True, choices=TRACKERS, help="tensorboard, or wandb (pip install 'offdiff[wandb]')")
    p.add_argument("--out", default="tensorboard",
                   help="folder to write into: one event-file folder per run, named by its run path; for wandb, "
                        "W&B's dir (default: tensorboard)")
    p.add_argument("--project", default="offdiff", help="W&B project (default: offdiff; WANDB_PROJECT overrides)")
    p.set_defaults(func=_export)
