#!/usr/bin/env bash
# On the GPU machine, in one call: decoding layers as CUDA graphs (`--cuda-graphs`) against the same runs without, prompt
# 512, output 32, random weights, float16. STEPS (default "check fixtures gpu67 outputs flexgen") picks the parts:
#   check:    `actorinfer version` (its CUDA self-test captures and replays a graph)                           ~10 s
#   fixtures: the OPT fixtures' greedy tokens on CUDA with --cuda-graphs (float32, float16) and without      ~1 min
#   gpu67:    OPT-6.7B all on the GPU, batch 32 x 1, --repeat 3: without graphs, with, and with graphs and the
#             memory-efficient kernel (one kernel for attention where the products take five)                ~2 min
#   outputs:  32 requests (512 random ids, 32 new tokens) through `generate` on OPT-6.7B, with and without
#             graphs: how many outputs are identical                                                            ~1 min
#   flexgen:  FlexGen's own benchmark, same model and policy (needs .baselines/flexgen carried)               ~1 min
#   auto67:   OPT-6.7B `--policy auto` under 40 GiB GPU / 100 GiB CPU, without and with graphs (--repeat 2)   ~2 min
#   trace:    one bench run of each with --trace of decoding step TRACE_STEP (default 5, replayed under graphs): its
#             timeline and per-lane summary                                                                    ~1 min
# Writes under $OUT: each run's output and summary.txt. Usage: STEPS="check gpu67" bash scripts/gpu/cuda-graphs.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
steps=${STEPS:-check fixtures gpu67 outputs flexgen}
repo=$PWD
card_profile=hocon/hardware/h200-141gb.json
nvidia-smi -L 2>/dev/null | grep -q H100 && card_profile=hocon/hardware/h100-80gb.json
hardware=${HARDWARE:-$card_profile}
ai() { bash .gpu/run.sh actorinfer "$@"; }
(nvidia-smi -L 2>/dev/null || echo "no GPU") | tee "$out/card.txt"
gpu67=(--model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0)
# bench NAME ARGS: its JSON in $out/NAME.json, its log in $out/NAME.log, one summary line.
bench() {
  local name=$1; shift
  ai bench --dummy --prompt-len 512 --gen-len 32 --json "$@" > "$out/$name.json" 2> "$out/$name.log"
  python3 - "$out/$name.json" "$name" <<'PY' | tee -a "$out/summary.txt"
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print(f"{sys.argv[2]}: no result"); sys.exit(0)
steps = r["gen_len"] - 1
g = r.get("cuda_graphs") or {}
print(f"{sys.argv[2]}: {r['total_throughput']:.1f} token/s (runs {', '.join(f'{x:.1f}' for x in r['total_throughput_runs'])}); "
      f"prefill {r['prefill_latency_s']:.3f} s, decode {r['decode_latency_s']:.3f} s = {r['decode_latency_s'] / steps * 1000:.2f} ms a step; "
      f"block {r['block_size']}; device peak {r['device_reported_peak_bytes'] / 2**30:.2f} GiB; graphs {g}")
PY
}
for step in $steps; do
  case $step in
    check)
      ai version > "$out/version.txt" 2>&1
      grep -E "cuda graph|copy engine" "$out/version.txt" | tee -a "$out/summary.txt" ;;
    fixtures)
      OUT=$out MODELS="opt-tiny opt-tiny-postln" RUNS="float32 float16 float32:cuda-graphs float16:cuda-graphs float16:cuda-graphs-efficient" \
        bash scripts/gpu/fixtures-cuda.sh
      cat "$out/fixtures.txt" >> "$out/summary.txt" ;;
    gpu67)
      bench gpu67-plain "${gpu67[@]}" --repeat 3
      bench gpu67-graphs "${gpu67[@]}" --repeat 3 --cuda-graphs
      bench gpu67-graphs-efficient "${gpu67[@]}" --repeat 3 --cuda-graphs --decode-attention efficient ;;
    outputs)
      python3 scripts/gpu/prompts.py /tmp/graph-prompts.jsonl 32 512 32 11
      for mode in plain graphs; do
        flag=(); [ $mode = graphs ] && flag=(--cuda-graphs)
        ai generate --dummy --model opt-6.7b --device cuda --dtype float16 --input /tmp/graph-prompts.jsonl \
          --output "$out/outputs-$mode.jsonl" "${gpu67[@]:2}" "${flag[@]}" > /dev/null 2> "$out/outputs-$mode.log"
      done
      python3 scripts/gpu/same-outputs.py "$out/outputs-plain.jsonl" "$out/outputs-graphs.jsonl" "with and without --cuda-graphs" | tee -a "$out/summary.txt"
      ;;
    flexgen)
      if [ -d .baselines/flexgen/flexgen ]; then
        (cd /tmp && timeout 300 python3 "$repo/.baselines/flexgen/run_flexgen_offline.py" "$repo/.baselines/flexgen" --path _DUMMY_ \
          --prompt-len 512 --gen-len 32 --log-file "$out/flexgen-gpu67.log" --model facebook/opt-6.7b --percent 100 0 100 0 100 0 \
          --gpu-batch-size 32 --num-gpu-batches 1 > "$out/flexgen-gpu67.txt" 2>&1)
        grep -iE "total throughput|decode latency|prefill latency" "$out/flexgen-gpu67.log" "$out/flexgen-gpu67.txt" 2>/dev/null | head -5 | sed 's/^/flexgen: /' | tee -a "$out/summary.txt"
      else
        echo "flexgen: not here (.baselines/flexgen)" | tee -a "$out/summary.txt"
      fi ;;
    auto67)
      bench auto67-plain --model opt-6.7b --policy auto --gpu-mem 40GiB --cpu-mem 100GiB --hardware "$hardware" --repeat 2
      bench auto67-graphs --model opt-6.7b --policy auto --gpu-mem 40GiB --cpu-mem 100GiB --hardware "$hardware" --repeat 2 --cuda-graphs ;;
    trace)
      for mode in plain graphs; do
        flag=(); [ $mode = graphs ] && flag=(--cuda-graphs)
        ai bench --dummy --prompt-len 512 --gen-len 32 "${gpu67[@]}" --repeat 1 "${flag[@]}" --trace "$out/trace-$mode.json" \
          --trace-step "${TRACE_STEP:-5}" > /dev/null 2> "$out/trace-$mode.log"
        grep -E "trace of " "$out/trace-$mode.log" | sed "s/^/$mode: /" | tee -a "$out/summary.txt"
      done ;;
    *) echo "unknown step '$step'" | tee -a "$out/summary.txt" ;;
  esac
done
