#!/usr/bin/env bash
# Does this CPU collect the same bytes as the committed local suite? A seconds-long answer: a small real
# collection (Hopper-v5, 128-unit SAC at batch 256, 400 updates before its medium snapshot, 3 episodes of it)
# into a temp store, then its SHA-256 against the one committed in results/local-suite/portable/probe.sha256
# (written on an AMD EPYC, and the same under QEMU as an Intel Haswell and an AMD EPYC-Rome:
# results/local-suite/portable/ABOUT.md). Exit 0 when they agree, 1 when they differ: then this CPU would
# write another local suite, which is worth recording with its `lscpu` model name.
#   bash benchmarks/collect_probe.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python -c "import offdiff" 2>/dev/null || source benchmarks/env.sh   # CI's and a set-up shell already have it
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MINARI_DATASETS_PATH="$work/store" OFFDIFF_CACHE="$work/cache" OMP_NUM_THREADS=1
python -m offdiff.cli data collect Hopper-v5 --kinds medium --episodes 3 --budget 1200 --seed 0 --set hidden=128 \
  --set batch_size=256 --set learning_starts=200 --set snapshots=2 --set eval_episodes=2 --quiet > "$work/log" 2>&1 \
  || { cat "$work/log" >&2; exit 2; }
here="$(python -c "from offdiff.data.sources import resolve_dataset
print(resolve_dataset('minari:local/hopper/medium-v0').data.load().content_sha256())")"
committed="$(cat results/local-suite/portable/probe.sha256)"
cpu="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
if [ "$here" = "$committed" ]; then
  echo "collect_probe: the same bytes as the committed collection (${here:0:12}) on ${cpu:-this CPU}"
else
  echo "collect_probe: OTHER bytes on ${cpu:-this CPU}: ${here:0:12}, committed ${committed:0:12}"
  exit 1
fi
