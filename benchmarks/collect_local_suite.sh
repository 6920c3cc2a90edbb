#!/usr/bin/env bash
# The local D4RL-style suite: for Hopper, HalfCheetah, Walker2d (SAC budget 1M steps, as D4RL's experts)
# and InvertedDoublePendulum (100k steps), train SAC and write random / medium / expert / medium-replay /
# medium-expert into the local Minari store as $NAMESPACE/<env>/<kind>-v0 (1M transitions per
# random/medium/expert dataset, as D4RL). Then `offdiff data list` shows them with their reference scores.
#
# Resumable: run it again after an interruption and every env continues from its last SAC checkpoint
# (under $OFFDIFF_CACHE/collect/); finished datasets are skipped. Cost: one SAC update with the default
# 256x256 nets takes ~10 ms on one CPU core, so a 1M-step env needs a few hours of CPU (much less with
# DEVICE=cuda, but then the datasets are not bit-reproducible). PARALLEL=1 runs the four envs at once
# (one core each), logging to $LOG_DIR/<env>.log. Extra arguments go to every `offdiff data collect`,
# e.g. `--sac eval_episodes=20`.
#
#   bash benchmarks/collect_local_suite.sh                    # sequential, seed 0, namespace "local"
#   PARALLEL=1 SEED=1 NAMESPACE=local-s1 bash benchmarks/collect_local_suite.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$OFFDIFF_ROOT"

SEED="${SEED:-0}"
NAMESPACE="${NAMESPACE:-local}"
TRANSITIONS="${TRANSITIONS:-1000000}"
DEVICE="${DEVICE:-cpu}"
PARALLEL="${PARALLEL:-0}"
LOG_DIR="${LOG_DIR:-results/collect_logs}"
KINDS="random,medium,expert,medium-replay,medium-expert"
export OMP_NUM_THREADS=1  # small nets: one thread per process is fastest, and leaves cores to the others

declare -A BUDGET=(
  [Hopper-v5]=1000000
  [HalfCheetah-v5]=1000000
  [Walker2d-v5]=1000000
  [InvertedDoublePendulum-v5]=100000
)

collect() {
  offdiff data collect "$1" --kinds "$KINDS" --budget "${BUDGET[$1]}" --transitions "$TRANSITIONS" \
    --seed "$SEED" --namespace "$NAMESPACE" --device "$DEVICE" "${@:2}"
}

if [ "$PARALLEL" = 1 ]; then
  mkdir -p "$LOG_DIR"
  pids=()
  for env in "${!BUDGET[@]}"; do
    echo "[collect] $env -> $LOG_DIR/$env.log"
    collect "$env" --quiet "$@" >"$LOG_DIR/$env.log" 2>&1 &
    pids+=("$!")
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  [ "$status" = 0 ] || { echo "[collect] some envs failed; see $LOG_DIR" >&2; exit 1; }
else
  for env in InvertedDoublePendulum-v5 Hopper-v5 Walker2d-v5 HalfCheetah-v5; do
    collect "$env" "$@"
  done
fi
offdiff data list | grep "\"$NAMESPACE/" || true
