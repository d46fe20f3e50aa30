#!/usr/bin/env bash
# On the GPU machine, in one call: fewer kernels a decoding layer, each change against the engine without it, side by side.
#   before: the chunks' merge as a kernel of its own (ACTORINFER_DECODE_MERGE=separate), the step's keys and values copied
#           into the cache before the attention (ACTORINFER_DECODE_WRITE=separate), fc1's ReLU after its product
#           (ACTORINFER_FC1_EPILOGUE=separate);
#   merge:  the merge in the attention kernel's last chunk;
#   write:  that, and the keys and values written by the attention kernel;
#   all:    that, and the ReLU in fc1's epilogue (the defaults);
#   graphs: all, and --cuda-graphs.
# STEPS (default "checks gpu67 flexgen outputs auto67 fixtures kernels") picks the parts:
#   checks:   `actorinfer version`'s last lines: the kernels against single precision, the launch over the capacity
#             against the launch over the filled length (the same values)
#   gpu67:    OPT-6.7B all on the GPU, 32 x 1, --repeat 3: every variant
#   flexgen:  FlexGen on the same row
#   outputs:  32 OPT-6.7B greedy requests, before, all and graphs: how many identical
#   auto67:   OPT-6.7B `--policy auto` under 40 GiB / 100 GiB, before, all and graphs
#   fixtures: the fixtures' greedy tokens on CUDA in float16, all
#   kernels:  the device's kernels by name, all and graphs (scripts/gpu/kernels-in-process.sh)
# Needs .gpu/ (pack.sh) and, for flexgen, .baselines/flexgen carried. Writes under $OUT; summary.txt has the figures.
# Usage: STEPS="checks gpu67" bash scripts/gpu/fewer-kernels.sh   (VARIANTS overrides "before merge write all graphs")
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
repo=$PWD
steps=${STEPS:-checks gpu67 flexgen outputs auto67 fixtures kernels}
variants=${VARIANTS:-before merge write all graphs}
card_profile=hocon/hardware/h200-141gb.json
nvidia-smi -L 2>/dev/null | grep -q H100 && card_profile=hocon/hardware/h100-80gb.json
ai() { bash .gpu/run.sh actorinfer "$@"; }
(nvidia-smi -L 2>/dev/null || echo "no GPU") | tee "$out/card.txt"
gpu67=(--model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0)
run_variant() {
  local name=$1; shift
  case $name in
    before) ACTORINFER_DECODE_MERGE=separate ACTORINFER_DECODE_WRITE=separate ACTORINFER_FC1_EPILOGUE=separate ai "$@" ;;
    merge) ACTORINFER_DECODE_WRITE=separate ACTORINFER_FC1_EPILOGUE=separate ai "$@" ;;
    write) ACTORINFER_FC1_EPILOGUE=separate ai "$@" ;;
    all) ai "$@" ;;
    graphs) ai "$@" --cuda-graphs ;;
  esac
}
for step in $steps; do
  case $step in
    checks) ai version > "$out/version.txt" 2>&1; echo "version: exit $?" | tee -a "$out/summary.txt"
      grep -E "^fused|^error" "$out/version.txt" | tee -a "$out/summary.txt" ;;
    gpu67)
      for v in $variants; do
        run_variant $v bench --dummy --prompt-len 512 --gen-len 32 --json "${gpu67[@]}" --repeat 3 > "$out/gpu67-$v.json" 2> "$out/gpu67-$v.log"
      done ;;
    flexgen)
      [ -d .baselines/flexgen/flexgen ] && (cd /tmp && timeout 300 python3 "$repo/.baselines/flexgen/run_flexgen_offline.py" "$repo/.baselines/flexgen" \
        --path _DUMMY_ --prompt-len 512 --gen-len 32 --log-file "$out/flexgen-gpu67.log" --model facebook/opt-6.7b --percent 100 0 100 0 100 0 \
        --gpu-batch-size 32 --num-gpu-batches 1 > "$out/flexgen-gpu67.txt" 2>&1) ;;
    outputs)
      python3 scripts/gpu/prompts.py /tmp/fewer-prompts.jsonl 32 512 32 11
      for v in before all graphs; do
        run_variant $v generate --dummy --device cuda --dtype float16 --input /tmp/fewer-prompts.jsonl --output "$out/outputs-$v.jsonl" \
          "${gpu67[@]}" > /dev/null 2> "$out/outputs-$v.log"
      done
      python3 scripts/gpu/same-outputs.py "$out/outputs-before.jsonl" "$out/outputs-all.jsonl" "before and with all three" | tee -a "$out/summary.txt"
      python3 scripts/gpu/same-outputs.py "$out/outputs-all.jsonl" "$out/outputs-graphs.jsonl" "all three without and with graphs" | tee -a "$out/summary.txt"
      ;;
    auto67)
      for v in before all graphs; do
        run_variant $v bench --dummy --prompt-len 512 --gen-len 32 --json --model opt-6.7b --policy auto --gpu-mem 40GiB --cpu-mem 100GiB \
          --hardware "$card_profile" --repeat 3 > "$out/auto67-$v.json" 2> "$out/auto67-$v.log"
      done ;;
    fixtures) RUNS="float16" EFFICIENT=0 OUT=$out bash scripts/gpu/fixtures-cuda.sh; cat "$out/fixtures.txt" >> "$out/summary.txt" ;;
    kernels) RUNS="plain graphs" OUT=$out bash scripts/gpu/kernels-in-process.sh > /dev/null 2>&1
      for r in plain graphs; do
        sed -n '/decoding, the last run/,/^$/p;/prefill (approximate/,/^$/p' "$out/$r.txt" | cut -c1-150 | grep -v "^$" | head -32 >> "$out/summary.txt"
      done ;;
    *) echo "unknown step '$step'" | tee -a "$out/summary.txt" ;;
  esac
done
python3 - "$out" "$variants" <<'PY' | tee -a "$out/summary.txt"
import json, re, sys
out, variants = sys.argv[1], sys.argv[2].split()
def load(name):
    try:
        return json.load(open(f"{out}/{name}.json"))
    except (OSError, ValueError):
        return None
flex = None
try:
    m = re.findall(r"total throughput: ([0-9.]+) token/s", open(f"{out}/flexgen-gpu67.txt").read())
    flex = float(m[-1]) if m else None
except OSError:
    pass
for row in ("gpu67", "auto67"):
    base = load(f"{row}-before")
    for v in variants:
        o = load(f"{row}-{v}")
        if not o:
            continue
        p = o["policy"]
        line = (f"{row} {v}: {o['total_throughput']:.2f} token/s (runs {', '.join(f'{x:.2f}' for x in o['total_throughput_runs'])}); "
                f"prefill {o['prefill_latency_s']:.3f} s, decode {o['decode_latency_s'] / 31 * 1000:.2f} ms a step; {p['gpu_batch_size']} x {p['num_gpu_batches']}")
        if base and v != "before":
            line += f"; {o['total_throughput'] / base['total_throughput']:.3f}x before"
        if flex and row == "gpu67":
            line += f"; {o['total_throughput'] / flex:.2f}x FlexGen ({flex:.2f})"
        print(line)
PY
exit 0
