#!/usr/bin/env bash
# Run one grid of benchmarks/grids/ on this machine and report it: set up (first time only), submit
# benchmarks/grids/NAME.yaml through the local executor (runs/NAME/), aggregate it into results/NAME/ (scores
# CSV, rliable statistics, tables, plots) and print the tables. Finished runs are skipped, so running it again
# only aggregates again. Extra arguments go to `offdiff grid submit`.
#   bash benchmarks/run_grid.sh quickstart
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benchmarks/env.sh
NAME="${1:?usage: bash benchmarks/run_grid.sh NAME [grid submit options]  (NAME: a file of benchmarks/grids/)}"
shift
offdiff grid submit "benchmarks/grids/$NAME.yaml" --profile slurm/profiles/local.yaml --runs-dir runs "$@"
offdiff aggregate "runs/$NAME" --out "results/$NAME"
echo
cat "results/$NAME/scores.md"
echo
cat "results/$NAME/aggregates.md"
