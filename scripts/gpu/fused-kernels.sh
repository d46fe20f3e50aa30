#!/usr/bin/env bash
# On the GPU machine, in one call: our fused decoding attention (--decode-attention fused) and LayerNorm kernels against the
# engine before them (batched products, libtorch's LayerNorm: ACTORINFER_LAYER_NORM=operations), side by side.
# STEPS (default "checks fixtures gpu67 flexgen") picks the parts:
#   checks:   `actorinfer version`: each kernel against single precision on seeded cases                      ~20 s
#   fixtures: the fixtures' greedy tokens on CUDA in float16 with the fused kernels (scripts/gpu/fixtures-cuda.sh)  ~1 min
#   gpu67:    OPT-6.7B all on the GPU, batch 32 x 1, --repeat 3: before (products, libtorch's norm), attention alone
#             (fused, libtorch's norm) and both (fused, our norm)                                             ~3 min
#   flexgen:  FlexGen on the same row                                                                         ~1.5 min
#   auto67:   OPT-6.7B `--policy auto` under 40 GiB / 100 GiB, before and both                                 ~2 min
#   outputs:  32 OPT-6.7B greedy requests (prompt 512, 32 new tokens), before and both: how many identical      ~1 min
#   trace:    one more run of both with --trace (the decoding step's timeline)                                ~1 min
# Needs .gpu/ (pack.sh) and, for flexgen, .baselines/flexgen carried. Writes under $OUT; summary.txt has the figures.
# Usage: STEPS="checks gpu67" bash scripts/gpu/fused-kernels.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
repo=$PWD
steps=${STEPS:-checks fixtures gpu67 flexgen}
card_profile=hocon/hardware/h200-141gb.json
nvidia-smi -L 2>/dev/null | grep -q H100 && card_profile=hocon/hardware/h100-80gb.json
ai() { bash .gpu/run.sh actorinfer "$@"; }
(nvidia-smi -L 2>/dev/null || echo "no GPU") | tee "$out/card.txt"
gpu67=(--model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0)
# variant NAME: the flags and environment of before, attention (fused attention alone) and both.
run_variant() {
  local name=$1; shift
  case $name in
    before) ACTORINFER_LAYER_NORM=operations ai "$@" --decode-attention products ;;
    attention) ACTORINFER_LAYER_NORM=operations ai "$@" --decode-attention fused ;;
    both) ai "$@" --decode-attention fused ;;
  esac
}
for step in $steps; do
  case $step in
    checks) ai version 2>&1 | grep -E "fused|cuda available" | tee -a "$out/summary.txt" ;;
    fixtures) RUNS="float16:fused" EFFICIENT=0 OUT=$out bash scripts/gpu/fixtures-cuda.sh; cat "$out/fixtures.txt" >> "$out/summary.txt" ;;
    gpu67)
      for v in before attention both; do
        run_variant $v bench --dummy --prompt-len 512 --gen-len 32 --json "${gpu67[@]}" --repeat 3 > "$out/gpu67-$v.json" 2> "$out/gpu67-$v.log"
      done ;;
    flexgen)
      [ -d .baselines/flexgen/flexgen ] && (cd /tmp && timeout 300 python3 "$repo/.baselines/flexgen/run_flexgen_offline.py" "$repo/.baselines/flexgen" \
        --path _DUMMY_ --prompt-len 512 --gen-len 32 --log-file "$out/flexgen-gpu67.log" --model facebook/opt-6.7b --percent 100 0 100 0 100 0 \
        --gpu-batch-size 32 --num-gpu-batches 1 > "$out/flexgen-gpu67.txt" 2>&1) ;;
    auto67)
      for v in before both; do
        run_variant $v bench --dummy --prompt-len 512 --gen-len 32 --json --model opt-6.7b --policy auto --gpu-mem 40GiB --cpu-mem 100GiB \
          --hardware "$card_profile" --repeat 3 > "$out/auto67-$v.json" 2> "$out/auto67-$v.log"
      done ;;
    outputs)
      python3 scripts/gpu/prompts.py /tmp/fused-prompts.jsonl 32 512 32 11
      for v in before both; do
        run_variant $v generate --dummy --device cuda --dtype float16 --input /tmp/fused-prompts.jsonl --output "$out/outputs-$v.jsonl" \
          "${gpu67[@]}" > /dev/null 2> "$out/outputs-$v.log"
      done
      python3 scripts/gpu/same-outputs.py "$out/outputs-before.jsonl" "$out/outputs-both.jsonl" "before and with both kernels" | tee -a "$out/summary.txt"
      ;;
    trace)
      run_variant both bench --dummy --prompt-len 512 --gen-len 32 "${gpu67[@]}" --repeat 1 --trace "$out/trace-both.json" > /dev/null 2> "$out/trace-both.log"
      grep -h "trace of" "$out/trace-both.log" | tee -a "$out/summary.txt" ;;
    *) echo "unknown step '$step'" | tee -a "$out/summary.txt" ;;
  esac
done
python3 - "$out" <<'PY' | tee -a "$out/summary.txt"
import json, re, sys
out = sys.argv[1]
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
    for v in ("before", "attention", "both"):
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
