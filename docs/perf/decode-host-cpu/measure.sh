#!/usr/bin/env bash
# Decoding ms/step of the CPU proxy (opt-h64-l32: OPT of hidden 64 and 32 layers, random weights), batch 32 x 1,
# prompt 64, 32 tokens, everything on the "GPU" tier (the CPU here), the runtime's own loop.
# Usage: docs/perf/decode-host-cpu/measure.sh [CLI dll, default: scripts/actorinfer] [repeats, default 7]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cli=${1:-}
repeats=${2:-7}
run() { if [ -n "$cli" ]; then dotnet "$cli" "$@"; else "$root/scripts/actorinfer" "$@"; fi; }
run bench --model "$here/opt-h64-l32" --dummy --prompt-len 64 --gen-len 32 --device cpu \
  --percent 100 0 100 0 100 0 --gpu-batch-size 32 --num-gpu-batches 1 --engine direct --repeat "$repeats" 2>&1 |
  awk '/^bench: run [0-9]+\/[0-9]+/ { for (i = 1; i <= NF; i++) if ($i == "decode") printf "%.2f\n", $(i+1) * 1000 / 31 }' | sort -n |
  awk '{ d[NR] = $1 } END { printf "decode ms/step: min %.2f, median %.2f (runs:", d[1], d[int((NR+1)/2)]; for (i = 1; i <= NR; i++) printf " %.2f", d[i]; print ")" }'
