#!/usr/bin/env bash
# The whole test suite: set up (first time only), lint, then every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benchmarks/env.sh
ruff check .
python -m pytest "$@"
