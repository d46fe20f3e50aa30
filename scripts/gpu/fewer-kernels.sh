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
steps=${STEPS:-checks gpu67 flexgen outputs auto67 fixtures kernels}
variants=${VARIANTS:-before merge write all graphs}
. scripts/gpu/variants-lib.sh
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
    gpu67) variant_step gpu67 "$variants" ;;
    outputs) variant_step outputs "before all graphs" ;;
    auto67) variant_step auto67 "before all graphs" ;;
    fixtures) RUNS="float16" EFFICIENT=0 OUT=$out bash scripts/gpu/fixtures-cuda.sh; cat "$out/fixtures.txt" >> "$out/summary.txt" ;;
    kernels) RUNS="plain graphs" OUT=$out bash scripts/gpu/kernels-in-process.sh > /dev/null 2>&1
      for r in plain graphs; do
        sed -n '/decoding, the last run/,/^$/p;/prefill (approximate/,/^$/p' "$out/$r.txt" | cut -c1-150 | grep -v "^$" | head -32 >> "$out/summary.txt"
      done ;;
    *) variant_step "$step" ;;
  esac
done
python3 scripts/gpu/variants-summary.py "$out" before $variants | tee -a "$out/summary.txt"
exit 0
