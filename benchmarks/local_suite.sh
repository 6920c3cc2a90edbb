#!/usr/bin/env bash
# The built-in local suite end to end: collect its D4RL-style MuJoCo datasets (benchmarks/collect_local_suite.sh,
# about an hour on 2 cores the first time; collected datasets are skipped), then run the local-suite grid
# (benchmarks/grids/local-suite.yaml: every algorithm on the medium datasets of Hopper, HalfCheetah, Walker2d and
# InvertedDoublePendulum, 3 seeds, about an hour on 2 cores) and aggregate it into results/local-suite/.
# Extra arguments go to `grid submit`.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/collect_local_suite.sh"
exec bash "$here/run_grid.sh" local-suite "$@"
