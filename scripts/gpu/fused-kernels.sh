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
steps=${STEPS:-checks fixtures gpu67 flexgen}
. scripts/gpu/variants-lib.sh
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
    gpu67) variant_step gpu67 "before attention both" ;;
    outputs) variant_step outputs "before both" ;;
    auto67) variant_step auto67 "before both" ;;
    trace)
      run_variant both bench --dummy --prompt-len 512 --gen-len 32 "${gpu67[@]}" --repeat 1 --trace "$out/trace-both.json" > /dev/null 2> "$out/trace-both.log"
      grep -h "trace of" "$out/trace-both.log" | tee -a "$out/summary.txt" ;;
    *) variant_step "$step" ;;
  esac
done
python3 scripts/gpu/variants-summary.py "$out" before before attention both | tee -a "$out/summary.txt"
exit 0
