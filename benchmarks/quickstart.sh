#!/usr/bin/env bash
# The main job: set up (first time only), run the quickstart grid (every algorithm on the built-in toy
# bandits, 2 seeds) on this machine through the local executor, then aggregate it into
# results/quickstart/ (scores CSV, rliable statistics, tables, plots) and print the table.
# Finished runs are skipped, so running it again only re-aggregates. Extra arguments go to `grid submit`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$OFFDIFF_ROOT"
offdiff grid submit benchmarks/grids/quickstart.yaml --profile slurm/profiles/local.yaml --runs-dir runs "$@"
offdiff aggregate runs/quickstart --out results/quickstart
echo
cat results/quickstart/scores.md
echo
cat results/quickstart/aggregates.md
