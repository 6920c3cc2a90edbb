"""Describe the collected local suite: one row per dataset with its recipe and the returns it holds.

Reads the datasets `offdiff data collect` wrote into the local Minari store (namespace `local` unless
given) and writes `datasets.csv` and `datasets.md` into OUT (results/local-suite by default): SAC budget,
the medium snapshot's step, random / medium / expert evaluation returns (the reference scores are the
random and expert ones), each dataset's size and mean episode return, raw and normalized, the MKL code
branch SAC and the rollouts ran in (COMPATIBLE: the branch MKL runs alike on every x86-64 CPU; "-" for a
collection older than that record) and the first 12 hex digits of the data's SHA-256 (what runs record), so two
collections compare at a glance.

    python benchmarks/local_suite_datasets.py [--namespace local] [--out results/local-suite]

`--check TABLE` writes nothing: it compares each dataset's SHA-256 with the `datasets.csv` TABLE of another
collection (e.g. results/local-suite/portable/datasets.csv) and prints one line per dataset; exit 0 when
every dataset of TABLE is here with the same bytes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from offdiff.data import sources
from offdiff.data.scores import normalized_score
from offdiff.data.transitions import Transitions
from offdiff.io import atomic_write_bytes


def episode_returns(t: Transitions) -> np.ndarray:
    """Returns of the episodes in a flat transition array (an episode ends at a terminal or a timeout)."""
    ends = np.flatnonzero(np.logical_or(t.terminals, t.timeouts)) + 1
    return np.array([chunk.sum() for chunk in np.split(t.rewards, ends) if len(chunk)])


def describe(dataset_id: str) -> dict[str, object]:
    source = sources.resolve(f"minari:{dataset_id}")
    info, data = source.info(), source.load()
    recipe = info.metadata["offdiff_collect"]
    returns = episode_returns(data)
    ref = source.ref_scores()
    return {
        "dataset": dataset_id, "env": recipe["env"], "kind": recipe["kind"], "sac_steps": recipe["budget"],
        "sac_hidden": recipe["sac"]["hidden"], "medium_step": recipe["medium_step"],
        "random_return": round(recipe["random_return"], 1), "medium_return": round(recipe["medium_return"], 1),
        "expert_return": round(recipe["expert_return"], 1), "episodes": info.num_episodes,
        "transitions": info.num_transitions, "data_mean_return": round(float(returns.mean()), 1),
        "data_normalized": round(float(normalized_score(returns.mean(), ref)), 1),
        "mkl_branch": recipe.get("mkl_branch", "-"), "sha256": data.content_sha256()[:12],
    }


def markdown(table: pd.DataFrame) -> str:
    rows = [list(table.columns), ["---"] * len(table.columns), *table.astype(str).values.tolist()]
    return "".join(f"| {' | '.join(row)} |\n" for row in rows)


def check(table: pd.DataFrame, reference: pd.DataFrame) -> bool:
    """One line per dataset of `reference`: the same bytes here, other bytes, or missing. True if all the same."""
    ours = dict(zip(table["dataset"], table["sha256"], strict=True))
    same = True
    for dataset, sha in zip(reference["dataset"], reference["sha256"], strict=True):
        if ours.get(dataset) == sha:
            print(f"same: {dataset} ({sha})")
            continue
        same = False
        print(f"DIFFERS: {dataset} (here {ours[dataset]}, table {sha})" if dataset in ours else f"MISSING: {dataset}")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="local")
    parser.add_argument("--out", type=Path, default=Path("results/local-suite"))
    parser.add_argument("--check", type=Path, metavar="TABLE", help="compare with another collection's datasets.csv")
    args = parser.parse_args()
    if args.check is not None and not args.check.is_file():
        raise SystemExit(f"no such table: {args.check}")
    ids = sorted(row["id"] for row in sources.list_local() if row["id"].startswith(f"{args.namespace}/"))
    if not ids:
        raise SystemExit(f"no datasets in namespace {args.namespace!r}; run benchmarks/collect_local_suite.sh")
    table = pd.DataFrame([describe(i) for i in ids])
    if args.check is not None:
        sys.exit(0 if check(table, pd.read_csv(args.check, dtype=str)) else 1)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "datasets.csv", table.to_csv(index=False).encode())
    atomic_write_bytes(args.out / "datasets.md", markdown(table).encode())
    print(markdown(table), end="")


if __name__ == "__main__":
    main()
