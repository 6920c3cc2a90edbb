#!/usr/bin/env bash
# The main job: set up (first time only), then train Diffusion-QL on the built-in four-corner bandit
# and print its normalized score. Extra arguments go to `offdiff train`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$OFFDIFF_ROOT"
offdiff train --algo dql --dataset toy:four_corners --seed 0 --steps 2000 --runs-dir runs/quickstart "$@"
