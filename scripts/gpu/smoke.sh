#!/usr/bin/env bash
# On the GPU machine (see docs/perf/README.md): CUDA self-test, fixture correctness on CUDA, a first 6.7B bench, a profile.
# Usage: bash scripts/gpu/smoke.sh   (with .gpu/ carried; writes under $OUT)
set -uo pipefail
out=${OUT:-/tmp/out}
ai() { bash .gpu/run.sh actorinfer "$@"; }
nvidia-smi -L | tee "$out/card.txt"
ai version 2>&1 | tee "$out/version.txt"
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
print(f"{m} cuda {dt}: {same}/{len(exp)} prompts reproduce the reference greedy tokens")
PY
  done
done
ai bench --model opt-6.7b --dummy --prompt-len 512 --gen-len 32 --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0 --repeat 3 --json 2>&1 | tee "$out/bench-6.7b-gpu.txt"
ai profile --device cuda --disk-dir /tmp --output "$out/profile.json" 2>&1 | tee "$out/profile.txt"
