#!/usr/bin/env bash
# On the GPU machine: decoding step times of each block of one job (OPT-6.7B, all on the GPU, a 24 GiB budget from the
# start: blocks of 13 x 3, prompt 512, 32 tokens), with the allocator's default settings and with expandable segments
# off; prints each block's median decoding step. The first block of a shape is where per-shape costs show.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p $out
work=$(mktemp -d)
python3 scripts/gpu/prompts.py "$work/in.jsonl" 234 512 32 6700
echo '{"at_step": 0, "tier": "gpu", "budget": "24GiB"}' > "$work/p.jsonl"
common=(--model opt-6.7b --dummy --device cuda --dtype float16 --gpu-batch-size 32 --num-gpu-batches 4 --cpu-mem 100GiB --hardware hocon/hardware/h200-141gb.json)
for v in default noexpand; do
  if [ $v = noexpand ]; then export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False; fi
  timeout 120 bash .gpu/run.sh actorinfer generate "${common[@]}" --input $work/in.jsonl --output $work/o.jsonl --pressure $work/p.jsonl --run-dir $out/run-$v 2> $out/$v.log
  tail -1 $out/$v.log
  python3 scripts/gpu/block-steps.py $out/run-$v "$v"
done
