#!/usr/bin/env bash
# One command for a machine with a CUDA GPU: everything offdiff has to measure or check there, in one folder.
#   bash benchmarks/device_check.sh [OUT]        # OUT defaults to device-check-<host>-<UTC time>
# Steps, in this order, quickest checks first (each logs to OUT/<step>.log; OUT/summary.tsv and the end of the
# output list status and seconds):
#   cpu-concurrent   `offdiff bench speed --concurrent 2` at --quick size on the CPU (checks the path)
#   cpu-packing      benchmarks/concurrency.py at --quick size on the CPU: 2 packed runs at once vs in turn
#   host-collect-probe  benchmarks/collect_probe.sh on the GPU machine's own CPU: does it collect the local suite's
#                    committed bytes (results/local-suite/portable/)? A second real CPU for that check (seconds)
#   cuda-sync-tests  the CUDA-only test that no training step syncs with the host (every algorithm; seconds)
#   cuda-grid        a short three-algorithm grid on a toy bandit, one job training its 3 runs at once, then
#                    `offdiff aggregate` into OUT/grid-results (cuda-aggregate)
#   cuda-speed       `offdiff bench speed --device cuda --modes eager,compile` (every algorithm)
#   cuda-compile-tests  compiled equals eager on CUDA, every algorithm (OFFDIFF_COMPILE_TESTS=all): minutes
#   cuda-concurrent  aggregate training steps/s of K = 1, 2, 4, 8 loops at once on the GPU (Diffusion-QL, DTQL;
#                    again through CUDA MPS, as cuda-concurrent-mps, where nvidia-cuda-mps-control exists)
#   cuda-packing     K = 1, 2, 4, 8 packed Diffusion-QL runs in one job, at once vs in turn (job wall-clock)
# On an H200 (torch 2.11), cuda-grid took 60 s and eager cuda-speed 87 s; compiled cuda-speed ran past 190 s and
# cuda-compile-tests past 150 s (two of its three algorithms done): results/device-check/README.md.
# STEPS=name,name,... runs only those steps (e.g. STEPS=cuda-sync-tests,cuda-grid,cuda-aggregate for a short lease);
# SPEED_MODES (default eager,compile) sets cuda-speed's modes. A step left out is listed as skipped.
# Without CUDA only the two CPU steps run (CI runs this path): one line says so, and the exit status is 0 if
# they passed. The exit status is 1 if any step failed or ran past STEP_TIMEOUT_S (default 900) seconds;
# later steps run anyway.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python -c "import offdiff" 2>/dev/null || source benchmarks/env.sh   # CI's and a set-up shell already have it
OUT="${1:-device-check-$(hostname)-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
: > "$OUT/summary.tsv"
failed=0

step() {  # step NAME COMMAND...: run it with its output in OUT/NAME.log; one summary line
  local name="$1" start=$SECONDS status
  shift
  if [ -n "${STEPS:-}" ] && [[ ",$STEPS," != *",$name,"* ]]; then
    printf '%s\tskipped (not in STEPS)\t0s\t-\n' "$name" | tee -a "$OUT/summary.tsv"
    return
  fi
  if timeout -k 30 "${STEP_TIMEOUT_S:-900}" "$@" > "$OUT/$name.log" 2>&1; then
    status=ok
  else
    status="failed ($?)"
    failed=1
  fi
  printf '%s\t%s\t%ss\t%s\n' "$name" "$status" "$((SECONDS - start))" "$OUT/$name.log" | tee -a "$OUT/summary.tsv"
}

bench=(python -m offdiff.cli bench speed)

step cpu-concurrent "${bench[@]}" --quick --algos dql --concurrent 2 --threads 1 --out "$OUT/cpu-concurrent.json"
step cpu-packing python benchmarks/concurrency.py "$OUT/cpu-packing" --quick --steps 50 --rounds 1 \
  --variants sequential,concurrent

if ! python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "device_check: no CUDA device here (torch.cuda.is_available() is False): ran the CPU parts only, in $OUT"
  exit "$failed"
fi

python -c "import torch; print(torch.cuda.get_device_name(), torch.__version__)" > "$OUT/device.txt" 2>&1
step host-collect-probe bash benchmarks/collect_probe.sh
step cuda-sync-tests python -m pytest tests/test_compile.py -q -p no:cacheprovider -k host_sync
cat > "$OUT/grid.yaml" <<'EOF'
name: device-check
datasets: [toy:four_corners]
seeds: [0]
algorithms: [dql, dtql, eda]
budget: {steps: 1000}
protocol: {eval_every: 1000, eval_episodes: 100, log_every: 100, checkpoint_every: 500}
EOF
cat > "$OUT/profile.yaml" <<'EOF'
executor: local
gpus: 1
cpus: 3
runs_per_job: 3
concurrency: 3
device: cuda
time_min: 60
array_limit: 1
EOF
step cuda-grid python -m offdiff.cli grid submit "$OUT/grid.yaml" --profile "$OUT/profile.yaml" --runs-dir "$OUT/runs"
step cuda-aggregate python -m offdiff.cli aggregate "$OUT/runs/device-check" --out "$OUT/grid-results"
step cuda-speed "${bench[@]}" --device cuda --modes "${SPEED_MODES:-eager,compile}" --out "$OUT/cuda-speed.json"
step cuda-compile-tests env OFFDIFF_COMPILE_TESTS=all python -m pytest tests/test_compile.py -q -p no:cacheprovider \
  -k cuda
step cuda-concurrent "${bench[@]}" --device cuda --algos dql,dtql --concurrent 1,2,4,8 --threads 1 \
  --out "$OUT/cuda-concurrent.json"
if command -v nvidia-cuda-mps-control > /dev/null; then
  step cuda-concurrent-mps "${bench[@]}" --device cuda --algos dql,dtql --concurrent 1,2,4,8 --threads 1 --mps \
    --out "$OUT/cuda-concurrent-mps.json"
fi
step cuda-packing python benchmarks/concurrency.py "$OUT/cuda-packing" --device cuda --k 1,2,4,8 --steps 500 \
  --rounds 1 --variants sequential,concurrent

echo
echo "device_check: $(cat "$OUT/device.txt"); everything is under $OUT"
sed 's/\t/   /g' "$OUT/summary.tsv"
for table in "$OUT"/cuda-speed.md "$OUT"/cuda-concurrent*.md "$OUT"/cuda-packing/packing.md \
             "$OUT"/grid-results/scores.md; do
  [ -f "$table" ] && { echo; echo "## $table"; cat "$table"; }
done
exit "$failed"
