#!/usr/bin/env bash
# On the GPU machine: OPT-30B, prompt 512, 32 tokens, random weights, median of 3 runs after a warm-up.
#   bash scripts/gpu/bench-auto.sh fixed    FlexGen's policy (weights 20% GPU / 80% CPU, cache and activations on the CPU,
#                                           CPU attention, 48 x 1): the baseline of the budgeted line (about 3.5 minutes)
#   bash scripts/gpu/bench-auto.sh auto     16 GiB GPU / 100 GiB CPU budget, policy searched by the planner from the card's
#                                           committed profile, with a timeline of one decoding step (about 6 minutes)
#   bash scripts/gpu/bench-auto.sh compressed   the same budgets with a 4-bit compressed KV cache (--compress-cache)
#   PROFILE=1 bash scripts/gpu/bench-auto.sh auto   measures the card's profile first (a few minutes more) and plans from it.
# Each mode fits one device call (10 minutes); run both on the same machine to compare them. Writes under $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
ai() { bash .gpu/run.sh actorinfer "$@"; }
card=$(nvidia-smi -L | tee "$out/card.txt")
case $card in *H200*) name=h200-141gb ;; *) name=h100-80gb ;; esac
profile=hocon/hardware/$name.json
if [ "${PROFILE:-0}" = 1 ]; then
  ai profile --device cuda --disk-dir /tmp --model opt-30b --output "$out/$name.json" --name "$name" 2>&1 | tee "$out/profile.txt"
  profile=$out/$name.json
fi
case ${1:-auto} in
  fixed)
    ai bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --gpu-batch-size 48 --num-gpu-batches 1 \
      --percent 20 80 0 100 0 100 --cpu-attention on --repeat 3 --json 2>&1 | grep -v "^\[" | tee "$out/bench-30b-fixed.txt" | grep "^bench" ;;
  auto)
    ai bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --policy auto --gpu-mem 16GiB --cpu-mem 100GiB \
      --hardware "$profile" --repeat 3 --json --trace "$out/trace-30b-auto.json" 2>&1 | grep --line-buffered -v "^\[" | tee "$out/bench-30b-auto.txt" \
      | grep -E "^bench|device_reported|predicted" ;;
  compressed)
    ai bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --policy auto --gpu-mem 16GiB --cpu-mem 100GiB --compress-cache \
      --hardware "$profile" --repeat 3 --json --trace "$out/trace-30b-compressed.json" ${EXTRA:-} 2>&1 | grep --line-buffered -v "^\[" \
      | tee "$out/bench-30b-compressed.txt" | grep -E "^bench|device_reported|predicted|total_throughput\"" ;;
  *) echo "usage: bench-auto.sh fixed|auto|compressed" >&2; exit 2 ;;
esac
