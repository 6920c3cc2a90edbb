#!/usr/bin/env bash
# The main job: set up (first time only), then the quickstart grid (benchmarks/grids/quickstart.yaml: every
# algorithm on one 2-D bandit of each paper, 2 seeds, CPU-sized, ~7 minutes on 2 cores) on this machine,
# aggregated into results/quickstart/ with its tables printed. Always the same grid, whatever is installed;
# the MuJoCo local suite has its own command, benchmarks/local_suite.sh. Extra arguments go to `grid submit`.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_grid.sh" quickstart "$@"
