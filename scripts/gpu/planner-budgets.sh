#!/usr/bin/env bash
# On the GPU machine, in one call: OPT-6.7B under GPU budgets between its weights and the 40 GiB block, the block the
# planner of this build picks (`bench --policy auto`) against a fixed policy (another planner's pick for the same budget,
# found off the GPU with `actorinfer plan` at the budget the node's planner searches: the budget less the CUDA context and
# the allowance; this build's planner also charges the allocator's reserve for the buffers).
# PAIRS (default "18GiB:12:1:87.5 22GiB:24:1:87.5"): BUDGET:GPU_BATCH:GPU_BATCHES:WEIGHTS_GPU_PERCENT for each fixed run;
# each budget also gets the auto run. REPEAT (default 2) measured runs each, after a warm-up.
# Needs .gpu/ (pack.sh) carried. Writes under $OUT: summary.txt, and raw.tar.gz with auto-BUDGET.json/.log and fixed-BUDGET.json/.log.
# Usage: bash scripts/gpu/planner-budgets.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
card_profile=hocon/hardware/h200-141gb.json
nvidia-smi -L 2>/dev/null | grep -q H100 && card_profile=hocon/hardware/h100-80gb.json
ai() { bash .gpu/run.sh actorinfer "$@"; }
(nvidia-smi -L 2>/dev/null || echo "no GPU") | tee "$out/card.txt"
common=(bench --dummy --prompt-len 512 --gen-len 32 --json --model opt-6.7b --cpu-mem 100GiB --repeat "${REPEAT:-2}")
for pair in ${PAIRS:-18GiB:12:1:87.5 22GiB:24:1:87.5}; do
  IFS=: read -r budget b n w <<< "$pair"
  ai "${common[@]}" --gpu-mem "$budget" --policy auto --hardware "$card_profile" > "$out/auto-$budget.json" 2> "$out/auto-$budget.log"
  ai "${common[@]}" --gpu-mem "$budget" --gpu-batch-size "$b" --num-gpu-batches "$n" \
    --percent "$w" "$(python3 -c "print(round(100 - $w, 4))")" 100 0 100 0 > "$out/fixed-$budget.json" 2> "$out/fixed-$budget.log"
  python3 - "$out" "$budget" <<'PY' | tee -a "$out/summary.txt"
import json, sys
out, budget = sys.argv[1], sys.argv[2]
gib = 1 << 30
rows = {}
for kind in ("auto", "fixed"):
    try:
        rows[kind] = json.load(open(f"{out}/{kind}-{budget}.json"))
    except (OSError, ValueError):
        print(f"{budget} {kind}: no result")
for kind, d in rows.items():
    p = d["policy"]
    print(f"{budget} {kind}: {d['total_throughput']:.2f} token/s (runs {', '.join(f'{x:.2f}' for x in d['total_throughput_runs'])}); "
          f"{p['gpu_batch_size']} x {p['num_gpu_batches']}, weights on the GPU {p['weights']['gpu'] * 100:.1f}%; "
          f"prefill {d['prefill_latency_s']:.3f} s, decode {d['decode_latency_s'] / 31 * 1000:.2f} ms a step; "
          f"predicted {d.get('predicted_throughput') or 0:.1f} token/s; device peak {(d.get('device_reported_peak_bytes') or 0) / gib:.2f} GiB")
if len(rows) == 2:
    print(f"{budget}: auto / fixed {rows['auto']['total_throughput'] / rows['fixed']['total_throughput']:.3f}x")
PY
done
OUT=$out bash scripts/gpu/pack-out.sh
exit 0
