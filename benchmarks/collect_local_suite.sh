#!/usr/bin/env bash
# The built-in local suite: D4RL-style datasets for Hopper-v5, HalfCheetah-v5, Walker2d-v5 (SAC 150k
# steps each) and InvertedDoublePendulum-v5 (SAC 30k steps), written into the local Minari store as
# $NAMESPACE/<env>/<kind>-v0 for kinds random / medium / expert / medium-replay / medium-expert, with
# 100k transitions per random / medium / expert dataset. SAC uses 128-unit networks, 20 evaluated
# snapshots (5 episodes each) to pick "medium". Sized so the whole suite takes under an hour on a 2-core
# CPU (all four envs at once, one core-thread each); D4RL's experts had 1M steps and 256-unit networks,
# so these behaviour policies are weaker (the README of results/local-suite states the returns reached).
# Deterministic, and meant to be the same bytes on every x86-64 CPU: `offdiff data collect` runs MKL in its
# COMPATIBLE code branch and SAC's Adam with IEEE's square root (results/local-suite/portable/ABOUT.md;
# checked under emulation, not yet on a second real CPU: `bash benchmarks/collect_probe.sh`). Check a
# collection against the committed one with
#   python benchmarks/local_suite_datasets.py --check results/local-suite/portable/datasets.csv
#
# Resumable: run it again after an interruption and every env continues from its last SAC checkpoint
# (under $OFFDIFF_CACHE/collect/); finished datasets are skipped. PARALLEL=1 (default) runs the four
# envs at once, logging to $LOG_DIR/<env>.log; PARALLEL=0 runs them one after another with progress
# bars. ENVS picks envs. TINY=1 is the seconds-long budget of the tests (tiny SAC, 2k transitions; a smoke
# test, not data to benchmark on; the expert may not beat random on every env). Extra arguments go to every `offdiff data collect`, e.g. `--set eval_episodes=10`.
#
#   bash benchmarks/collect_local_suite.sh                    # seed 0, namespace "local"
#   PARALLEL=0 SEED=1 NAMESPACE=local-s1 bash benchmarks/collect_local_suite.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benchmarks/env.sh

SEED="${SEED:-0}"
NAMESPACE="${NAMESPACE:-local}"
TINY="${TINY:-0}"
TRANSITIONS="${TRANSITIONS:-100000}"
DEVICE="${DEVICE:-cpu}"
PARALLEL="${PARALLEL:-1}"
LOG_DIR="${LOG_DIR:-runs/collect_logs}"
KINDS="random,medium,expert,medium-replay,medium-expert"
export OMP_NUM_THREADS=1  # small nets: one thread per process is fastest, and leaves cores to the others

declare -A BUDGET=(
  [Hopper-v5]=150000
  [HalfCheetah-v5]=150000
  [Walker2d-v5]=150000
  [InvertedDoublePendulum-v5]=30000
)
SAC=(--set hidden=128 --set snapshots=20 --set eval_episodes=5)
if [ "$TINY" = 1 ]; then  # tests/test_collect.py's setting
  for env in "${!BUDGET[@]}"; do BUDGET[$env]=800; done
  TRANSITIONS=2000
  SAC=(--set hidden=32 --set batch_size=64 --set lr=1e-3 --set learning_starts=100 --set snapshots=4
       --set eval_episodes=5)
fi
ENVS="${ENVS:-InvertedDoublePendulum-v5 Hopper-v5 Walker2d-v5 HalfCheetah-v5}"

collect() {
  offdiff data collect "$1" --kinds "$KINDS" --budget "${BUDGET[$1]}" --transitions "$TRANSITIONS" \
    --seed "$SEED" --namespace "$NAMESPACE" --device "$DEVICE" "${SAC[@]}" "${@:2}"
}

if [ "$PARALLEL" = 1 ]; then
  mkdir -p "$LOG_DIR"
  pids=()
  for env in $ENVS; do
    echo "[collect] $env -> $LOG_DIR/$env.log"
    collect "$env" --quiet "$@" >"$LOG_DIR/$env.log" 2>&1 &
    pids+=("$!")
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  [ "$status" = 0 ] || { echo "[collect] some envs failed; see $LOG_DIR" >&2; exit 1; }
else
  for env in $ENVS; do
    collect "$env" "$@"
  done
fi
offdiff data list | grep "\"$NAMESPACE/" || true
