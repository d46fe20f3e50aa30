#!/usr/bin/env bash
# On an H100: 6.7B all on GPU, then OPT-30B under 16 GiB / 100 GiB with the planner (hocon/hardware/h100-80gb.json).
set -uo pipefail
out=${OUT:-/tmp/out}
ai() { bash .gpu/run.sh actorinfer "$@"; }
nvidia-smi -L | tee "$out/card.txt"
bash scripts/gpu/bench.sh 6.7b | grep -E "^bench|total_throughput\"|device_reported"
ai bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --policy auto --gpu-mem 16GiB --cpu-mem 100GiB \
   --hardware hocon/hardware/h100-80gb.json --repeat 3 --json --trace "$out/trace-30b-auto.json" 2>&1 | tee "$out/bench-30b-auto.txt" | grep -E "^bench|^error"
