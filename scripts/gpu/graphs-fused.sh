#!/usr/bin/env bash
# On the GPU machine, in one call: decoding layers as CUDA graphs (--cuda-graphs) with our fused attention launched over the
# cache's capacity (one graph a layer for every step of a block), against the engine without graphs, side by side; and
# cuBLASLt as libtorch's BLAS library (TORCH_BLAS_PREFER_CUBLASLT=1) on top.
# STEPS (default "checks products gpu67 flexgen outputs") picks the parts:
#   checks:   `actorinfer version`: the kernels against single precision, and the launch over the capacity against the
#             launch over the filled length (the same values)                                                  ~20 s
#   products: scripts/gpu/small-batch-products.py (the decoding step's linear maps, formulated several ways)   ~1 min
#   gpu67:    OPT-6.7B all on the GPU, 32 x 1, --repeat 3: plain, graphs, graphs-lt                          ~3 min
#   flexgen:  FlexGen on the same row                                                                         ~1.5 min
#   outputs:  32 OPT-6.7B greedy requests, plain and graphs: how many identical                                ~1 min
#   auto67:   OPT-6.7B `--policy auto` under 40 GiB / 100 GiB, plain, graphs, graphs-lt                        ~3 min
#   fixtures: the fixtures' greedy tokens on CUDA in float16 with --cuda-graphs                                ~1 min
#   trace:    one run of graphs with --trace (the decoding step's timeline)                                   ~1 min
# Needs .gpu/ (pack.sh) and, for flexgen, .baselines/flexgen carried. Writes under $OUT; summary.txt has the figures.
# Usage: STEPS="checks gpu67" bash scripts/gpu/graphs-fused.sh   (VARIANTS overrides "plain graphs graphs-lt")
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
repo=$PWD
steps=${STEPS:-checks products gpu67 flexgen outputs}
variants=${VARIANTS:-plain graphs graphs-lt}
card_profile=hocon/hardware/h200-141gb.json
nvidia-smi -L 2>/dev/null | grep -q H100 && card_profile=hocon/hardware/h100-80gb.json
ai() { bash .gpu/run.sh actorinfer "$@"; }
(nvidia-smi -L 2>/dev/null || echo "no GPU") | tee "$out/card.txt"
gpu67=(--model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0)
run_variant() {
  local name=$1; shift
  case $name in
    plain) ai "$@" ;;
    graphs) ai "$@" --cuda-graphs ;;
    graphs-lt) TORCH_BLAS_PREFER_CUBLASLT=1 ai "$@" --cuda-graphs ;;
    lt) TORCH_BLAS_PREFER_CUBLASLT=1 ai "$@" ;;
  esac
}
for step in $steps; do
  case $step in
    checks) ai version 2>&1 | grep -E "fused|cuda available" | tee -a "$out/summary.txt" ;;
    products) python3 scripts/gpu/small-batch-products.py 100 > "$out/products.txt" 2>&1 ;;
    gpu67)
      for v in $variants; do
        run_variant $v bench --dummy --prompt-len 512 --gen-len 32 --json "${gpu67[@]}" --repeat 3 > "$out/gpu67-$v.json" 2> "$out/gpu67-$v.log"
      done ;;
    flexgen)
      [ -d .baselines/flexgen/flexgen ] && (cd /tmp && timeout 300 python3 "$repo/.baselines/flexgen/run_flexgen_offline.py" "$repo/.baselines/flexgen" \
        --path _DUMMY_ --prompt-len 512 --gen-len 32 --log-file "$out/flexgen-gpu67.log" --model facebook/opt-6.7b --percent 100 0 100 0 100 0 \
        --gpu-batch-size 32 --num-gpu-batches 1 > "$out/flexgen-gpu67.txt" 2>&1) ;;
    outputs)
      python3 scripts/gpu/prompts.py /tmp/graph-prompts.jsonl 32 512 32 11
      for v in plain graphs; do
        run_variant $v generate --dummy --device cuda --dtype float16 --input /tmp/graph-prompts.jsonl --output "$out/outputs-$v.jsonl" \
          "${gpu67[@]}" > /dev/null 2> "$out/outputs-$v.log"
      done
      python3 scripts/gpu/same-outputs.py "$out/outputs-plain.jsonl" "$out/outputs-graphs.jsonl" "without and with graphs" | tee -a "$out/summary.txt"
      ;;
    auto67)
      for v in $variants; do
        run_variant $v bench --dummy --prompt-len 512 --gen-len 32 --json --model opt-6.7b --policy auto --gpu-mem 40GiB --cpu-mem 100GiB \
          --hardware "$card_profile" --repeat 3 > "$out/auto67-$v.json" 2> "$out/auto67-$v.log"
      done ;;
    fixtures) RUNS="float16:cuda-graphs" EFFICIENT=0 OUT=$out bash scripts/gpu/fixtures-cuda.sh; cat "$out/fixtures.txt" >> "$out/summary.txt" ;;
    trace)
      run_variant graphs bench --dummy --prompt-len 512 --gen-len 32 "${gpu67[@]}" --repeat 1 --trace "$out/trace-graphs.json" --trace-step 5 > /dev/null 2> "$out/trace-graphs.log"
      grep -h "trace of" "$out/trace-graphs.log" | tee -a "$out/summary.txt" ;;
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
    base = load(f"{row}-plain")
    for v in variants:
        o = load(f"{row}-{v}")
        if not o:
            continue
        p = o["policy"]
        line = (f"{row} {v}: {o['total_throughput']:.2f} token/s (runs {', '.join(f'{x:.2f}' for x in o['total_throughput_runs'])}); "
                f"prefill {o['prefill_latency_s']:.3f} s, decode {o['decode_latency_s'] / 31 * 1000:.2f} ms a step; {p['gpu_batch_size']} x {p['num_gpu_batches']}")
        if base and v != "plain":
            line += f"; {o['total_throughput'] / base['total_throughput']:.3f}x plain"
        if flex and row == "gpu67":
            line += f"; {o['total_throughput'] / flex:.2f}x FlexGen ({flex:.2f})"
        print(line)
PY
exit 0
