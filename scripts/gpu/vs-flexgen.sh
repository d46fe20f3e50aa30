#!/usr/bin/env bash
# On the GPU machine, in one call: the rows of issue 28's table, ActorInfer and FlexGen side by side (prompt 512, output
# 32, random weights, float16), each of ours with the planner's predicted GPU peak (the device's figure it predicts, and the
# tensors in it) beside the device-reported one.
# STEPS (default "gpu67 auto67 fixed30") picks the rows; a call has at most 600 s, so split them over calls:
#   gpu67:   OPT-6.7B all on the GPU, batch 32 x 1: ours (--repeat 3) and FlexGen (--percent 100 0 100 0 100 0)  ~2 min;
#            with EFFICIENT=1 (the default) ours again with --decode-attention efficient (gpu67-efficient: one fused
#            kernel for decoding attention where the products take five), against the same FlexGen run       +1 min;
#            with TRACE=1 (the default) also one more run of ours with --trace: the first decoding step's timeline
#            (ours-gpu67-trace.json, Chrome trace) and its per-lane summary (ours-gpu67-trace.log)               +1 min
#   auto67:  OPT-6.7B `--policy auto` under 40 GiB GPU / 100 GiB CPU (the block the planner picks), ours only    ~1 min
#   fixed30: OPT-30B weights 20/80, cache and activations on the CPU, CPU attention, 48 x 1: ours and FlexGen
#            (--cpu-cache-compute), FlexGen first                                                                ~7 min
#            (FIXED30_RULE=0: FlexGen's run alone, for fixed30-spread to compare with)
#   fixed30-spread: the same policy with --weight-placement spread (the 20% of the weights on the GPU placed over the model
#            as a whole, 19.7% realized, where FlexGen's rule places 8.2%), ours only, against fixed30's FlexGen run   ~2 min
#   comp30:  OPT-30B `--policy auto --compress-weight --compress-cache` under 16 GiB GPU / 100 GiB CPU: ours, then
#            FlexGen with the policy ours chose and the same compression flags, within FLEXGEN_LIMIT (300 s)     ~8 min
#            (COMP30_REPEAT, default 2: ours' measured runs after its warm-up; the planner chooses CPU attention
#            too, --cpu-attention auto, unless COMP30_CPU_ATTENTION says on or off)
# Needs .gpu/ (pack.sh) and .baselines/flexgen (see shared/baselines/flexgen/README.md) carried. Writes under $OUT:
# each run's output, and summary.txt (throughputs, ratios ours / FlexGen, predicted and device-reported GPU peaks).
# Usage: STEPS="gpu67 auto67" bash scripts/gpu/vs-flexgen.sh   (PROFILE=1 STEPS=comp30 for issue 28's item 3 from a fresh profile)
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
steps=${STEPS:-gpu67 auto67 fixed30}
repo=$PWD
# The card's committed profile (H100 or H200) unless HARDWARE names one.
card_profile=hocon/hardware/h200-141gb.json
nvidia-smi -L 2>/dev/null | grep -q H100 && card_profile=hocon/hardware/h100-80gb.json
hardware=${HARDWARE:-$card_profile}
flexgen_limit=${FLEXGEN_LIMIT:-300}
ai() { bash .gpu/run.sh actorinfer "$@"; }
# PROFILE=1: measure the card's profile first (about 2 minutes; CPU attention at OPT-30B's width, over a plain and a
# compressed cache) and plan from it.
if [ "${PROFILE:-0}" = 1 ]; then
  ai profile --device cuda --disk-dir /tmp --model opt-30b --output "$out/profile.json" --name measured > "$out/profile.txt" 2>&1 \
    && hardware=$out/profile.json
fi
(nvidia-smi -L 2>/dev/null || echo "no GPU") | tee "$out/card.txt"
[ -d .baselines/flexgen/flexgen ] || echo "FlexGen is not here (.baselines/flexgen): its rows are skipped" | tee -a "$out/summary.txt"
# flexgen NAME LIMIT ARGS: FlexGen's own benchmark (dummy weights) from /tmp, its log in $out/flexgen-NAME.log.
flexgen() {
  local name=$1 limit=$2; shift 2
  [ -d .baselines/flexgen/flexgen ] || return 0
  (cd /tmp && timeout "$limit" python3 "$repo/.baselines/flexgen/run_flexgen_offline.py" "$repo/.baselines/flexgen" --path _DUMMY_ \
    --prompt-len 512 --gen-len 32 --log-file "$out/flexgen-$name.log" "$@" > "$out/flexgen-$name.txt" 2>&1) \
    || echo "flexgen $name: exit $? (limit $limit s)" >> "$out/flexgen-$name.txt"
}
# ours NAME ARGS: bench --json, its output in $out/ours-NAME.json (and its log lines in ours-NAME.log).
ours() {
  local name=$1; shift
  ai bench --dummy --prompt-len 512 --gen-len 32 --json "$@" > "$out/ours-$name.json" 2> "$out/ours-$name.log"
}
for step in $steps; do
  case $step in
    gpu67)
      ours gpu67 --model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0 --repeat 3
      flexgen gpu67 300 --model facebook/opt-6.7b --percent 100 0 100 0 100 0 --gpu-batch-size 32 --num-gpu-batches 1
      [ "${EFFICIENT:-1}" = 1 ] && ours gpu67-efficient --model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0 \
        --repeat 3 --decode-attention efficient
      # The step-time breakdown (issue 28, item 6): a run of its own, so that the events do not touch the measured runs.
      [ "${TRACE:-1}" = 1 ] && ai bench --dummy --prompt-len 512 --gen-len 32 --model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 \
        --percent 100 0 100 0 100 0 --repeat 1 --trace "$out/ours-gpu67-trace.json" > /dev/null 2> "$out/ours-gpu67-trace.log"
      ;;
    auto67)
      ours auto67 --model opt-6.7b --policy auto --gpu-mem 40GiB --cpu-mem 100GiB --hardware "$hardware" --repeat 3 ;;
    fixed30)
      flexgen fixed30 330 --model facebook/opt-30b --percent 20 80 0 100 0 100 --gpu-batch-size 48 --num-gpu-batches 1 --cpu-cache-compute
      [ "${FIXED30_RULE:-1}" = 1 ] && ours fixed30 --model opt-30b --gpu-batch-size 48 --num-gpu-batches 1 --percent 20 80 0 100 0 100 \
        --cpu-attention on --repeat "${FIXED30_REPEAT:-2}" ;;
    fixed30-spread)
      ours fixed30-spread --model opt-30b --gpu-batch-size 48 --num-gpu-batches 1 --percent 20 80 0 100 0 100 --cpu-attention on \
        --weight-placement spread --repeat "${FIXED30_REPEAT:-2}" ;;
    comp30)
      ours comp30 --model opt-30b --policy auto --gpu-mem 16GiB --cpu-mem 100GiB --hardware "$hardware" --compress-weight --compress-cache \
        --cpu-attention "${COMP30_CPU_ATTENTION:-auto}" --repeat "${COMP30_REPEAT:-2}"
      read -r b n cpu pct <<< "$(python3 - "$out/ours-comp30.json" <<'PY'
import json, sys
try:
    p = json.load(open(sys.argv[1]))["policy"]
except (OSError, ValueError, KeyError):
    sys.exit(0)
pct = lambda f: f"{round(f['gpu'] * 100)} {round(f['cpu'] * 100)}"
print(p["gpu_batch_size"], p["num_gpu_batches"], int(bool(p.get("cpu_attention"))) * int(p["cache"]["cpu"] > 0),
      f"{pct(p['weights'])} {pct(p['cache'])} {pct(p['activations'])}")
PY
)"
      if [ -n "${b:-}" ]; then
        # shellcheck disable=SC2086
        flexgen comp30 "$flexgen_limit" --model facebook/opt-30b --percent $pct --gpu-batch-size "$b" --num-gpu-batches "$n" \
          --compress-weight --compress-cache $([ "$cpu" = 1 ] && echo --cpu-cache-compute)
      fi ;;
    *) echo "unknown step '$step'" | tee -a "$out/summary.txt" ;;
  esac
done

# A row for each step, and gpu67's efficient-attention run beside it (against the same FlexGen run).
rows=$steps
[ -f "$out/ours-gpu67-efficient.json" ] && rows="$rows gpu67-efficient"
python3 - "$out" $rows <<'PY' | tee -a "$out/summary.txt"
import json, re, sys
out, steps = sys.argv[1], sys.argv[2:]
print(open(f"{out}/card.txt").read().strip())
def ours(name):
    try:
        return json.load(open(f"{out}/ours-{name}.json"))
    except (OSError, ValueError):
        return None
def flexgen(name):
    try:
        text = open(f"{out}/flexgen-{name}.txt").read()
    except OSError:
        return None
    m = re.findall(r"total throughput: ([0-9.]+) token/s", text)
    peak = re.findall(r"peak gpu mem: ([0-9.]+) GB", text)
    return (float(m[-1]) if m else None, float(peak[-1]) if peak else None, text.strip().splitlines()[-1] if text.strip() else "")
gib = 1 << 30
for step in steps:
    o, f = ours(step), flexgen(step.split("-")[0])
    line = f"{step}: "
    if o:
        p = o["policy"]
        dev, pred = o.get("device_reported_peak_bytes"), o.get("predicted_device_peak_bytes")
        tensors = o.get("predicted_gpu_peak_bytes")
        line += (f"ours {o['total_throughput']:.2f} token/s (runs {', '.join(f'{x:.2f}' for x in o['total_throughput_runs'])}; "
                 f"prefill {o['prefill_latency_s']:.2f} s, decode {o['decode_latency_s']:.2f} s = {o['decode_latency_s'] / 31 * 1000:.1f} ms a step; "
                 f"{p['gpu_batch_size']} x {p['num_gpu_batches']}, weights {p['weights']['gpu']:.3f} on the GPU"
                 f", {o.get('realized_weights', {}).get('gpu', float('nan')):.3f} realized, {p.get('weight_placement', 'flexgen')}); "
                 f"GPU peak: device {dev / gib if dev else float('nan'):.2f} GiB, predicted {pred / gib if pred else float('nan'):.2f} GiB"
                 + (f" (predicted / device {pred / dev:.3f})" if dev and pred else "")
                 + (f", of which tensors {tensors / gib:.2f} GiB" if tensors else ""))
    else:
        line += "ours: no result"
    if f is not None:
        if f[0]:
            line += f"; FlexGen {f[0]:.2f} token/s (peak {f[1]} GB as FlexGen reports it)"
            if o:
                line += f"; ratio {o['total_throughput'] / f[0]:.2f}x"
        else:
            line += f"; FlexGen: no figure ({f[2][:160]})"
    print(line)
PY
# The traced step's per-lane summary, where gpu67 traced one.
[ -f "$out/ours-gpu67-trace.log" ] && { grep -h "trace of the first decoding step" "$out/ours-gpu67-trace.log" || tail -3 "$out/ours-gpu67-trace.log"; } | tee -a "$out/summary.txt"
exit 0
