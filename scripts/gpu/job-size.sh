#!/usr/bin/env bash
# On the GPU machine: one static policy (OPT-6.7B, 40 GiB budget from the start, blocks of 31 x 3, prompt 512, 32 tokens)
# over jobs of 2,400, 768 and again 2,400 requests; prints each block's median decoding step, to tell whether step
# times depend on the size of the job. Writes under $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p $out
work=$(mktemp -d)
python3 scripts/gpu/prompts.py "$work/in.jsonl" 2400 512 32 6700
echo '{"at_step": 0, "tier": "gpu", "budget": "40GiB"}' > "$work/p.jsonl"
head -n 768 $work/in.jsonl > $work/in-768.jsonl
common=(--model opt-6.7b --dummy --device cuda --dtype float16 --gpu-batch-size 32 --num-gpu-batches 4 --cpu-mem 100GiB --hardware hocon/hardware/h200-141gb.json)
for n in 2400 768 2400; do
  f=$work/in.jsonl; [ $n = 768 ] && f=$work/in-768.jsonl
  timeout 200 bash .gpu/run.sh actorinfer generate "${common[@]}" --input $f --output $work/o.jsonl --pressure $work/p.jsonl --run-dir $out/run-$n 2> $out/$n.log
  python3 scripts/gpu/block-steps.py $out/run-$n "$n requests"
done
