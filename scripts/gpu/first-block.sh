#!/usr/bin/env bash
# On the GPU machine: decoding step times of each block of one job (OPT-6.7B, all on the GPU, a 24 GiB budget from the
# start: blocks of 13 x 3, prompt 512, 32 tokens), with the allocator's default settings and with expandable segments
# off; prints each block's median decoding step. The first block of a shape is where per-shape costs show.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p $out
work=$(mktemp -d)
python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]; rng = random.Random(6700)
with open(f"{work}/in.jsonl", "w") as f:
    for i in range(234):
        ids = [2] + [rng.randrange(10, 50000) for _ in range(511)]
        f.write(json.dumps({"id": f"r{i}", "prompt": ids, "max_tokens": 32, "temperature": 0, "ignore_eos": True}) + "\n")
with open(f"{work}/p.jsonl", "w") as f: f.write(json.dumps({"at_step": 0, "tier": "gpu", "budget": "24GiB"}) + "\n")
PY
common=(--model opt-6.7b --dummy --device cuda --dtype float16 --gpu-batch-size 32 --num-gpu-batches 4 --cpu-mem 100GiB --hardware hocon/hardware/h200-141gb.json)
for v in default noexpand; do
  if [ $v = noexpand ]; then export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False; fi
  timeout 120 bash .gpu/run.sh actorinfer generate "${common[@]}" --input $work/in.jsonl --output $work/o.jsonl --pressure $work/p.jsonl --run-dir $out/run-$v 2> $out/$v.log
  tail -1 $out/$v.log
  python3 - $out/run-$v $v <<'PY'
import json,statistics,sys
ho=[json.loads(l) for l in open(sys.argv[1]+'/timeline.jsonl')]
prev=None; run=[]; res=[]
for x in ho:
    if x['kind']!='step': continue
    dt=x['t_ms']-prev if prev else 0; prev=x['t_ms']
    if run and dt>300: res.append(run); run=[]
    run.append(dt)
res.append(run)
print(sys.argv[2], "per-block median decode step (ms):", [round(statistics.median(r[1:]),1) for r in res if len(r)>2])
PY
done
