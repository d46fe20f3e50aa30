#!/usr/bin/env bash
# On the GPU machine: the runtime benchmarks of docs/perf (FlexGen's settings: prompt 512, output 32, dummy weights).
# Usage: bash scripts/gpu/bench.sh [6.7b] [30b] [auto]   (with .gpu/ carried; writes under $OUT)
set -uo pipefail
out=${OUT:-/tmp/out}
ai() { bash .gpu/run.sh actorinfer "$@"; }
nvidia-smi -L | tee "$out/card.txt"
for what in "$@"; do
  case $what in
    6.7b) ai bench --model opt-6.7b --dummy --prompt-len 512 --gen-len 32 --gpu-batch-size 32 --num-gpu-batches 1 \
            --percent 100 0 100 0 100 0 --repeat 3 --json 2>&1 | tee "$out/bench-6.7b-gpu.txt" ;;
    30b) ai bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --gpu-batch-size 48 --num-gpu-batches 1 \
            --percent 20 80 0 100 0 100 --cpu-attention on --repeat 3 --json 2>&1 | tee "$out/bench-30b-fixed.txt" ;;
    auto) ai bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --policy auto --gpu-mem 16GiB --cpu-mem 100GiB \
            --hardware hocon/hardware/h100-80gb.json --repeat 3 --json 2>&1 | tee "$out/bench-30b-auto.txt" ;;
  esac
done
