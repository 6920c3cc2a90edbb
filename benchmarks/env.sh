#!/usr/bin/env bash
# Source this to get offdiff's virtual environment (.venv, or $OFFDIFF_VENV), created and installed on
# first use. A torch that the base Python already has (e.g. a CUDA build) is kept: the venv then sees
# the system site-packages. Otherwise the CPU build torch==2.13.0 is installed. Other packages are
# pinned by benchmarks/constraints.txt (versions known to work together).
set -euo pipefail
OFFDIFF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OFFDIFF_VENV="${OFFDIFF_VENV:-$OFFDIFF_ROOT/.venv}"
_python="${PYTHON:-python3}"

if [ ! -x "$OFFDIFF_VENV/bin/python" ]; then
  if "$_python" -c "import torch" 2>/dev/null; then
    echo "[offdiff] using the torch of $_python: $("$_python" -c 'import torch; print(torch.__version__)')"
    "$_python" -m venv --system-site-packages "$OFFDIFF_VENV"
  else
    "$_python" -m venv "$OFFDIFF_VENV"
  fi
fi
if ! "$OFFDIFF_VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[offdiff] installing torch==2.13.0 (CPU build)"
  "$OFFDIFF_VENV/bin/python" -m pip install --quiet torch==2.13.0
fi
_stamp="$OFFDIFF_VENV/.offdiff-installed"
if [ ! -f "$_stamp" ] || [ "$OFFDIFF_ROOT/pyproject.toml" -nt "$_stamp" ] \
   || [ "$OFFDIFF_ROOT/benchmarks/constraints.txt" -nt "$_stamp" ]; then
  echo "[offdiff] installing offdiff and its dependencies into $OFFDIFF_VENV"
  "$OFFDIFF_VENV/bin/python" -m pip install --quiet -c "$OFFDIFF_ROOT/benchmarks/constraints.txt" \
    -e "$OFFDIFF_ROOT[dev]"
  touch "$_stamp"
fi
export PATH="$OFFDIFF_VENV/bin:$PATH"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
