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
steps=${STEPS:-checks products gpu67 flexgen outputs}
variants=${VARIANTS:-plain graphs graphs-lt}
. scripts/gpu/variants-lib.sh
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
    gpu67|auto67) variant_step $step "$variants" ;;
    outputs) variant_step outputs "plain graphs" ;;
    fixtures) RUNS="float16:cuda-graphs" EFFICIENT=0 OUT=$out bash scripts/gpu/fixtures-cuda.sh; cat "$out/fixtures.txt" >> "$out/summary.txt" ;;
    trace)
      run_variant graphs bench --dummy --prompt-len 512 --gen-len 32 "${gpu67[@]}" --repeat 1 --trace "$out/trace-graphs.json" --trace-step 5 > /dev/null 2> "$out/trace-graphs.log"
      grep -h "trace of" "$out/trace-graphs.log" | tee -a "$out/summary.txt" ;;
    *) variant_step "$step" ;;
  esac
done
python3 scripts/gpu/variants-summary.py "$out" plain $variants | tee -a "$out/summary.txt"
exit 0
