#!/usr/bin/env bash
# The whole test suite: set up (first time only), lint, then every test. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../benchmarks/env.sh"
cd "$OFFDIFF_ROOT"
ruff check .
python -m pytest "$@"
