#!/usr/bin/env bash
# On the GPU machine: does a block of sequences with mixed prompt lengths (as requeued sequences have) stall at its
# start? OPT-6.7B, 40 requests of 512 to 543 prompt tokens (or all 512), under 12 GiB and 40 GiB; prints each block
# start and every step over 150 ms.  Usage, from the repository root with .gpu/ packed and carried:
#   bash scripts/gpu/mixed-prompts.sh
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"; work=$(mktemp -d)
case $(nvidia-smi -L | head -1) in *H200*) profile=hocon/hardware/h200-141gb.json ;; *) profile=hocon/hardware/h100-80gb.json ;; esac
python3 - "$work" <<'PY'
import json, random, sys
w = sys.argv[1]; rng = random.Random(5)
for name, extra in (("mixed", lambda: rng.randrange(0, 32)), ("uniform", lambda: 0)):
    with open(f"{w}/{name}.jsonl", "w") as f:
        for i in range(40):
            n = 511 + extra()
            f.write(json.dumps({"id": f"{name}{i}", "prompt": [2] + [rng.randrange(10, 50000) for _ in range(n)], "max_tokens": 32, "temperature": 0, "ignore_eos": True}) + "\n")
for gib in (12, 40):
    open(f"{w}/p{gib}.jsonl", "w").write(json.dumps({"at_step": 0, "tier": "gpu", "budget": f"{gib}GiB"}) + "\n")
PY
for case in mixed:12 uniform:12 mixed:40; do
  input=${case%%:*}; gib=${case##*:}
  timeout 150 bash .gpu/run.sh actorinfer generate --model opt-6.7b --dummy --device cuda --dtype float16 --gpu-batch-size 128 --num-gpu-batches 4 \
    --cpu-mem 100GiB --hardware "$profile" --input "$work/$input.jsonl" --output "$work/o.jsonl" --pressure "$work/p$gib.jsonl" --run-dir "$work/run-$input-$gib" > "$work/log" 2>&1
  echo "== $input prompts, $gib GiB: $(grep -c . "$work/o.jsonl") results"
  python3 - "$work/run-$input-$gib/timeline.jsonl" <<'PY'
import json, sys
xs = [json.loads(l) for l in open(sys.argv[1])]
prev = None
for x in xs:
    if x["kind"] != "step": print("  ", x["t_ms"], x["kind"], x.get("detail", "")[:70]); continue
    if prev and (x['t_ms'] - prev['t_ms'] > 150 or x['block_size'] != prev['block_size']): print(f"   {x['t_ms']:.0f} gap {x['t_ms']-prev['t_ms']:.1f} ms tokens {x['tokens']-prev['tokens']} block {x['block_size']} device {x['device_bytes']/2**30:.2f} GiB")
    prev = x
PY
done 2>&1
