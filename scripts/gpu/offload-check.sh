#!/usr/bin/env bash
# On the GPU machine: greedy tokens of the fixtures under offloaded placements on CUDA equal the reference.
# WEIGHT_PLACEMENT (flexgen, the default, or spread) places the offloaded runs' weights; with spread, OPT-1.3B in float16
# at 20/80 is also run under both placements, whose tokens must be equal.
set -uo pipefail
out=${OUT:-/tmp/out}
placement=${WEIGHT_PLACEMENT:-flexgen}
ai() { bash .gpu/run.sh actorinfer "$@"; }
mkdir -p /tmp/ai-disk
for m in opt-tiny opt-tiny-postln; do
  python3 scripts/gpu/fixture-requests.py "$m"
  for p in "50 50 0 100 0 100 --cpu-attention on" "0 100 0 100 0 100 --cpu-attention off" "0 0 0 0 50 50 --cpu-attention off" "30 30 30 30 30 30 --cpu-attention on"; do
    ai generate --model .gpu/fixtures/$m --input /tmp/in-$m.jsonl --output /tmp/out.jsonl --device cuda --dtype float32 \
       --gpu-batch-size 2 --num-gpu-batches 3 --disk-dir /tmp/ai-disk --weight-placement "$placement" --percent $p 2>&1 | grep -v "^generate:"
    python3 - "$m" "$p" "$placement" <<'PY' | tee -a "$out/offload-check.txt"
import json, sys
m, p = sys.argv[1], sys.argv[2]
exp = [json.loads(l) for l in open(f".gpu/fixtures/{m}/expected.jsonl")]
got = [json.loads(l) for l in open("/tmp/out.jsonl")]
same = sum(e["greedy_new_tokens"] == g["output_ids"] for e, g in zip(exp, got))
print(f"{m} cuda float32 --percent {p} --weight-placement {sys.argv[3]} (2 x 3 block): {same}/{len(exp)} reproduce the reference")
PY
  done
done

# A model large enough that the device is still busy when the host goes on (the fixtures finish at once): OPT-1.3B with
# random weights in float32, 24 prompts of 128 tokens, 16 greedy tokens each; CPU attention and offloaded placements
# against everything on the GPU.
python3 scripts/gpu/prompts.py /tmp/in-1.3b.jsonl 24 128 16 13
common=(--model opt-1.3b --dummy --input /tmp/in-1.3b.jsonl --device cuda --dtype float32 --gpu-batch-size 4 --num-gpu-batches 3 --disk-dir /tmp/ai-disk)
ai generate "${common[@]}" --output /tmp/ref-1.3b.jsonl --percent 100 0 100 0 100 0 2>&1 | grep -v "^generate:"
for p in "50 50 0 100 0 100 --cpu-attention on" "20 80 0 100 0 100 --cpu-attention on" "0 100 50 50 0 100 --cpu-attention off"; do
  ai generate "${common[@]}" --output /tmp/out-1.3b.jsonl --weight-placement "$placement" --percent $p 2>&1 | grep -v "^generate:"
  python3 - "$p $placement" <<'PY' | tee -a "$out/offload-check.txt"
import json, sys
ref = [json.loads(l) for l in open("/tmp/ref-1.3b.jsonl")]
got = [json.loads(l) for l in open("/tmp/out-1.3b.jsonl")]
same = sum(r.get("output_ids") == g.get("output_ids") for r, g in zip(ref, got))
print(f"opt-1.3b (random weights) cuda float32 --percent {sys.argv[1]} (4 x 3 block): {same}/{len(ref)} equal the all-on-GPU run's tokens")
PY
done

if [ "$placement" = spread ]; then
  f16=(--model opt-1.3b --dummy --input /tmp/in-1.3b.jsonl --device cuda --dtype float16 --gpu-batch-size 8 --num-gpu-batches 1
       --percent 20 80 0 100 0 100 --cpu-attention on)
  ai generate "${f16[@]}" --output /tmp/rule-1.3b.jsonl --weight-placement flexgen 2>&1 | grep -v "^generate:"
  ai generate "${f16[@]}" --output /tmp/spread-1.3b.jsonl --weight-placement spread 2>&1 | grep -v "^generate:"
  python3 - <<'PY' | tee -a "$out/offload-check.txt"
import json
a = [json.loads(l) for l in open("/tmp/rule-1.3b.jsonl")]
b = [json.loads(l) for l in open("/tmp/spread-1.3b.jsonl")]
same = sum(x.get("output_ids") == y.get("output_ids") for x, y in zip(a, b))
print(f"opt-1.3b (random weights) cuda float16 --percent 20 80 0 100 0 100 --cpu-attention on (8 x 1): spread {same}/{len(a)} equal FlexGen's rule's tokens")
PY
fi
