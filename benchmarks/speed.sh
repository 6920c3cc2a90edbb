#!/usr/bin/env bash
# The speed benchmark: gradient steps/s per stage, actions/s at evaluation (1, 10, 20 envs), EDA's
# alignment-set generation and peak memory, per algorithm at the papers' settings, with ratios to the
# official implementations. Arguments go to `offdiff bench speed`, e.g.
#   bash benchmarks/speed.sh --modes eager,compile --threads 2 --out speed.json
#   bash benchmarks/speed.sh --device cuda --modes eager,compile --out results/speed/cuda.json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benchmarks/env.sh
exec offdiff bench speed "$@"
