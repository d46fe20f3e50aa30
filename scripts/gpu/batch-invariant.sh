#!/usr/bin/env bash
# On the GPU machine, in one call: batch-invariant mode's checks and cost.
#   1. `actorinfer version`: the CUDA self-test, then whether the batch-invariant attention kernel gives the CPU's bits
#      on seeded inputs, and whether a batch-invariant product gives a row the same bits alone and among others;
#   2. bench, OPT-6.7B all on the GPU, batch 32 (prompt 512, 32 tokens, random weights, float16), plain and
#      --batch-invariant, alternated ($REPEAT measured runs each);
#   3. bench --policy auto at 40 GiB GPU / 100 GiB CPU, plain and --batch-invariant (the node's block for that budget).
# Usage, from the repository root with .gpu/ packed and carried: bash scripts/gpu/batch-invariant.sh   (writes under $OUT)
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi -L | head -1 | tee "$out/card.txt"
ai() { bash .gpu/run.sh actorinfer "$@"; }
ai version 2>&1 | tee "$out/version.txt"
steps=${STEPS:-gpu32 auto40}
has() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
for mode in plain invariant; do
  flag=(); [ "$mode" = invariant ] && flag=(--batch-invariant)
  has gpu32 && timeout -k 10 200 bash .gpu/run.sh actorinfer bench --model opt-6.7b --dummy --device cuda --dtype float16 --prompt-len 512 --gen-len 32 \
    --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0 --repeat "${REPEAT:-3}" --json "${flag[@]}" \
    > "$out/gpu32-$mode.json" 2> "$out/gpu32-$mode.log"
  has auto40 && timeout -k 10 300 bash .gpu/run.sh actorinfer bench --model opt-6.7b --dummy --device cuda --dtype float16 --policy auto --cpu-attention auto \
    --gpu-mem 40GiB --cpu-mem 100GiB --prompt-len 512 --gen-len 32 --repeat "${REPEAT:-3}" --json "${flag[@]}" \
    > "$out/auto40-$mode.json" 2> "$out/auto40-$mode.log"
done
python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, sys, os
out = sys.argv[1]
print(open(f"{out}/card.txt").read().strip())
def get(name):
    try:
        b = json.load(open(f"{out}/{name}.json"))
        return b.get("total_throughput"), b.get("decode_latency_s"), b.get("prefill_latency_s"), b.get("block_size"), b.get("policy")
    except Exception as e: return None
for run in ("gpu32", "auto40"):
    p, i = get(f"{run}-plain"), get(f"{run}-invariant")
    if p and i and p[0] and i[0]:
        print(f"{run}: plain {p[0]:.1f} token/s (block {p[3]}, prefill {p[2]:.3f} s, decode {p[1]:.3f} s), batch-invariant {i[0]:.1f} token/s (block {i[3]}, prefill {i[2]:.3f} s, decode {i[1]:.3f} s): ratio {i[0] / p[0]:.3f}")
    else:
        print(f"{run}: plain {p}, batch-invariant {i}")
PY
