#!/usr/bin/env bash
# Source this to get offdiff's virtual environment (.venv, or $OFFDIFF_VENV), created and installed on
# first use. A torch that the base Python already has (e.g. a CUDA build) is kept: the venv then sees
# the system site-packages. Otherwise the CPU build torch==2.13.0 is installed. Other packages are
# pinned by benchmarks/constraints.txt (versions known to work together).
#
# Sourcing it only puts the venv's bin/ first on PATH: it leaves your shell's options (set -e, ...) and
# every other variable as they were, and a failed step returns non-zero instead of exiting your shell.

_offdiff_env() {
  local root venv python stamp
  unset -f _offdiff_env
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
  venv="${OFFDIFF_VENV:-$root/.venv}"
  python="${PYTHON:-python3}"
  if [ ! -x "$venv/bin/python" ]; then
    if "$python" -c "import torch" 2>/dev/null; then
      echo "[offdiff] using the torch of $python: $("$python" -c 'import torch; print(torch.__version__)')"
      "$python" -m venv --system-site-packages "$venv" || return 1
    else
      "$python" -m venv "$venv" || return 1
    fi
  fi
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "[offdiff] installing torch==2.13.0 (CPU build)"
    "$venv/bin/python" -m pip install --quiet torch==2.13.0 || return 1
  fi
  stamp="$venv/.offdiff-installed"
  if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$root/benchmarks/constraints.txt" -nt "$stamp" ]
  then
    echo "[offdiff] installing offdiff and its dependencies into $venv"
    "$venv/bin/python" -m pip install --quiet -c "$root/benchmarks/constraints.txt" -e "$root[dev]" || return 1
    touch "$stamp" || return 1
  fi
  case "$PATH" in
    "$venv/bin:"*) ;;
    *) export PATH="$venv/bin:$PATH" ;;
  esac
}
_offdiff_env
