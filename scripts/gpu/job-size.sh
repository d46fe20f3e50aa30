#!/usr/bin/env bash
# On the GPU machine: one static policy (OPT-6.7B, 40 GiB budget from the start, blocks of 31 x 3, prompt 512, 32 tokens)
# over jobs of 2,400, 768 and again 2,400 requests; prints each block's median decoding step, to tell whether step
# times depend on the size of the job. Writes under $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p $out
work=$(mktemp -d)
python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]; rng = random.Random(6700)
with open(f"{work}/in.jsonl", "w") as f:
    for i in range(2400):
        ids = [2] + [rng.randrange(10, 50000) for _ in range(511)]
        f.write(json.dumps({"id": f"r{i}", "prompt": ids, "max_tokens": 32, "temperature": 0, "ignore_eos": True}) + "\n")
with open(f"{work}/p.jsonl", "w") as f: f.write(json.dumps({"at_step": 0, "tier": "gpu", "budget": "40GiB"}) + "\n")
PY
head -n 768 $work/in.jsonl > $work/in-768.jsonl
common=(--model opt-6.7b --dummy --device cuda --dtype float16 --gpu-batch-size 32 --num-gpu-batches 4 --cpu-mem 100GiB --hardware hocon/hardware/h200-141gb.json)
for n in 2400 768 2400; do
  f=$work/in.jsonl; [ $n = 768 ] && f=$work/in-768.jsonl
  timeout 200 bash .gpu/run.sh actorinfer generate "${common[@]}" --input $f --output $work/o.jsonl --pressure $work/p.jsonl --run-dir $out/run-$n 2> $out/$n.log
  python3 - $out/run-$n $n <<'PY'
import json,statistics,sys
ho=[json.loads(l) for l in open(sys.argv[1]+'/timeline.jsonl')]
prev=None; run=[]; res=[]
for x in ho:
    if x['kind']!='step': continue
    dt=x['t_ms']-prev if prev else 0; prev=x['t_ms']
    if run and dt>300: res.append(run); run=[]
    run.append(dt)
res.append(run)
print(sys.argv[2], "requests: per-block median decode step (ms):", [round(statistics.median(r[1:]),1) for r in res if len(r)>2])
PY
done
