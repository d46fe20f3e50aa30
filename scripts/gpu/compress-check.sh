#!/usr/bin/env bash
# On the GPU machine: a 4-bit compressed KV cache gives the same greedy tokens wherever it lives (on the GPU, on the CPU,
# on disk, split) on CUDA: OPT-1.3B with random weights in float16, 24 prompts of 128 tokens, 16 greedy tokens each,
# a 4 x 3 block. Also counts how many sequences keep the uncompressed run's tokens (compression is lossy). Writes under $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out" /tmp/ai-disk
ai() { bash .gpu/run.sh actorinfer "$@"; }
python3 scripts/gpu/prompts.py /tmp/in-1.3b.jsonl 24 128 16 13
# Attention on the GPU wherever the cache lives (as FlexGen attends a compressed cache, and as the planner searches with
# one): with the default `--cpu-attention on` a cache off the GPU is attended on the CPU, whose written order of float32
# operations differs from the GPU's products in bits (on the CPU with OPT-125m in float16 that alone changed a sequence).
common=(--model opt-1.3b --dummy --input /tmp/in-1.3b.jsonl --device cuda --dtype float16 --gpu-batch-size 4 --num-gpu-batches 3 --disk-dir /tmp/ai-disk
  --cpu-attention off)
ai generate "${common[@]}" --output /tmp/exact-1.3b.jsonl --percent 100 0 100 0 100 0 2>&1 | grep -v "^generate:"
ai generate "${common[@]}" --output /tmp/ref-1.3b.jsonl --percent 100 0 100 0 100 0 --compress-cache 2>&1 | grep -v "^generate:"
compare() {
  python3 - "$1" "$2" "$3" <<'PY' | tee -a "$out/compress-check.txt"
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
same = sum(r.get("output_ids") == g.get("output_ids") for r, g in zip(ref, got))
print(f"opt-1.3b (random weights) cuda float16 (4 x 3 block) {sys.argv[3]}: {same}/{len(ref)}")
PY
}
compare /tmp/exact-1.3b.jsonl /tmp/ref-1.3b.jsonl "compressed cache on the GPU vs uncompressed, sequences with identical tokens"
for p in "100 0 0 100 100 0" "0 100 0 100 0 100" "100 0 0 0 100 0" "50 50 30 30 50 50"; do
  ai generate "${common[@]}" --output /tmp/out-1.3b.jsonl --percent $p --compress-cache 2>&1 | grep -v "^generate:"
  compare /tmp/ref-1.3b.jsonl /tmp/out-1.3b.jsonl "--compress-cache --percent $p vs compressed cache on the GPU, equal tokens"
  cp /tmp/out-1.3b.jsonl "$out/out-${p// /-}.jsonl"
done
cp /tmp/exact-1.3b.jsonl /tmp/ref-1.3b.jsonl "$out/"
