#!/usr/bin/env bash
# On the GPU machine, in one call: OPT-6.7B's 40 GiB block at the GPU batch sizes between the planner's old grid points
# (64 and 96), the block `--policy auto` picks, and the engine's checks and figures on the same machine.
# STEPS (default "checks fixtures gpu67 flexgen outputs blocks auto67") picks the parts:
#   checks:   `actorinfer version`'s last lines (the fused kernels against single precision)
#   fixtures: the fixtures' greedy tokens on CUDA, float32 and float16
#   gpu67:    OPT-6.7B all on the GPU, 32 x 1, --repeat 3
#   flexgen:  FlexGen on the same row
#   outputs:  32 OPT-6.7B greedy requests against REFERENCE (a file of the same requests' outputs by an earlier build), if given
#   blocks:   OPT-6.7B, all on the GPU, under --gpu-mem 40GiB, at BLOCKS (default "64 80 88") x 1, --repeat 3 each
#   auto67:   OPT-6.7B `--policy auto` under 40 GiB / 100 GiB
# Needs .gpu/ (pack.sh) and, for flexgen, .baselines/flexgen carried. Writes under $OUT: summary.txt has the figures, raw.tar.gz every file of the steps.
# Usage: STEPS="checks blocks" bash scripts/gpu/block-sizes.sh
set -uo pipefail
steps=${STEPS:-checks fixtures gpu67 flexgen outputs blocks auto67}
. scripts/gpu/variants-lib.sh
run_variant() { shift; ai "$@"; }
for step in $steps; do
  case $step in
    checks) ai version > "$out/version.txt" 2>&1; echo "version: exit $?" | tee -a "$out/summary.txt"
      grep -E "^fused|^error" "$out/version.txt" | tee -a "$out/summary.txt" ;;
    fixtures) RUNS="float32 float16" OUT=$out bash scripts/gpu/fixtures-cuda.sh; cat "$out/fixtures.txt" >> "$out/summary.txt" ;;
    gpu67) variant_step gpu67 main ;;
    outputs)
      if [ -n "${REFERENCE:-}" ] && [ -f "$REFERENCE" ]; then
        variant_step outputs main
        python3 scripts/gpu/same-outputs.py "$REFERENCE" "$out/outputs-main.jsonl" "the reference and main" | tee -a "$out/summary.txt"
      fi ;;
    blocks)
      for b in ${BLOCKS:-64 80 88}; do
        ai bench --dummy --prompt-len 512 --gen-len 32 --json --model opt-6.7b --gpu-batch-size "$b" --num-gpu-batches 1 \
          --percent 100 0 100 0 100 0 --gpu-mem 40GiB --repeat 3 > "$out/block-$b.json" 2> "$out/block-$b.log"
        python3 - "$out/block-$b.json" "$b" <<'PY' | tee -a "$out/summary.txt"
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print(f"block {sys.argv[2]} x 1: no result"); sys.exit(0)
gib = 1 << 30
print(f"block {sys.argv[2]} x 1 under 40 GiB: {d['total_throughput']:.2f} token/s (runs "
      + ", ".join(f"{x:.2f}" for x in d['total_throughput_runs'])
      + f"); prefill {d['prefill_latency_s']:.3f} s, decode {d['decode_latency_s']:.3f} s = {d['decode_latency_s'] / 31 * 1000:.2f} ms a step; "
      f"device peak {d.get('device_reported_peak_bytes', 0) / gib:.2f} GiB, predicted {d.get('predicted_device_peak_bytes', 0) / gib:.2f}")
PY
      done ;;
    auto67) variant_step auto67 main ;;
    *) variant_step "$step" ;;
  esac
done
python3 scripts/gpu/variants-summary.py "$out" main main | tee -a "$out/summary.txt"
OUT=$out bash scripts/gpu/pack-out.sh
exit 0
