#!/usr/bin/env bash
# The main job: set up (first time only), run the quickstart grid on this machine through the local
# executor, aggregate it into results/<grid>/ (scores CSV, rliable statistics, tables, plots) and print
# the table. The grid is the local suite (benchmarks/grids/local-suite.yaml: every algorithm on the
# medium datasets of Hopper, HalfCheetah, Walker2d, InvertedDoublePendulum, 3 seeds, ~1 hour on 2 cores)
# once benchmarks/collect_local_suite.sh has collected it, and the built-in toy bandits otherwise
# (benchmarks/grids/quickstart.yaml, 2 seeds, ~7 minutes). GRID=quickstart or GRID=local-suite picks one.
# Finished runs are skipped, so running it again only re-aggregates. Extra arguments go to `grid submit`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benchmarks/env.sh
PROFILE=slurm/profiles/local.yaml

if [ -z "${GRID:-}" ]; then
  if check="$(offdiff grid submit benchmarks/grids/local-suite.yaml --profile "$PROFILE" --dry-run 2>&1)"; then
    GRID=local-suite
  else
    GRID=quickstart
    echo "[quickstart] the local suite is not collected (${check##*error: }); running the toy bandits."
    echo "[quickstart] bash benchmarks/collect_local_suite.sh collects it (under an hour on 2 cores)."
  fi
fi
offdiff grid submit "benchmarks/grids/$GRID.yaml" --profile "$PROFILE" --runs-dir runs "$@"
offdiff aggregate "runs/$GRID" --out "results/$GRID"
echo
cat "results/$GRID/scores.md"
echo
cat "results/$GRID/aggregates.md"
