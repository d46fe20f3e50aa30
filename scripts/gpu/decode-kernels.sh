#!/usr/bin/env bash
# On the GPU machine: decoding attention by batched products (the default) against cuDNN's kernel, same build, same call.
#   1. the fixtures' greedy tokens on CUDA (float32 and float16) with the default;
#   2. OPT-6.7B benches (random weights), each setting run with both kernels, alternating which goes first;
# Usage: bash scripts/gpu/decode-kernels.sh   (with .gpu/ carried; writes under $OUT)
set -uo pipefail
out=${OUT:-/tmp/out}
ai() { bash .gpu/run.sh actorinfer "$@"; }
nvidia-smi -L | tee "$out/card.txt"
for m in opt-tiny opt-tiny-postln; do
  python3 - "$m" <<'PY'
import json, sys
m = sys.argv[1]
with open(f"/tmp/in-{m}.jsonl", "w") as f:
    for i, l in enumerate(open(f".gpu/fixtures/{m}/expected.jsonl")):
        d = json.loads(l)
        f.write(json.dumps({"id": f"r{i}", "prompt": d.get("prompt_text", d["prompt_ids"]), "max_tokens": len(d["greedy_new_tokens"]),
                            "temperature": 0, "ignore_eos": True}) + "\n")
PY
  for dt in float32 float16; do
    ai generate --model .gpu/fixtures/$m --input /tmp/in-$m.jsonl --output /tmp/out-$m-$dt.jsonl --device cuda --dtype $dt --batch-size 8 2>&1 | tail -1
    python3 - "$m" "$dt" <<'PY' | tee -a "$out/fixtures.txt"
import json, sys
m, dt = sys.argv[1], sys.argv[2]
exp = [json.loads(l) for l in open(f".gpu/fixtures/{m}/expected.jsonl")]
got = [json.loads(l) for l in open(f"/tmp/out-{m}-{dt}.jsonl")]
same = sum(e["greedy_new_tokens"] == g["output_ids"] for e, g in zip(exp, got))
print(f"{m} cuda {dt} (decoding attention by products): {same}/{len(exp)} prompts reproduce the reference greedy tokens")
PY
  done
done
i=0
for setting in "512 32 32" "512 32 94" "128 128 128"; do
  read -r prompt gen batch <<< "$setting"
  order=(products cudnn); [ $((i % 2)) = 1 ] && order=(cudnn products); i=$((i + 1))
  for kernel in "${order[@]}"; do
    ai bench --model opt-6.7b --dummy --prompt-len "$prompt" --gen-len "$gen" --gpu-batch-size "$batch" --num-gpu-batches 1 \
      --percent 100 0 100 0 100 0 --repeat 2 --decode-attention "$kernel" > "$out/bench-$prompt-$gen-b$batch-$kernel.txt" 2>&1
    echo "prompt $prompt, gen $gen, batch $batch, $kernel: $(grep -E 'decode|total' "$out/bench-$prompt-$gen-b$batch-$kernel.txt" | tr '\n' ' ' | tr -s ' ')" | tee -a "$out/kernels.txt"
  done
done
