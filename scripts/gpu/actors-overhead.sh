#!/usr/bin/env bash
# On the GPU machine: the actors' messaging overhead, in one process (bench --engine compare alternates the runtime
# called directly and the actor-driven runtime), all on GPU, batch 32, prompt 512, output 32.
# Usage: bash scripts/gpu/actors-overhead.sh [model...]
set -uo pipefail
out=${OUT:-/tmp/out}
nvidia-smi -L | tee "$out/card.txt"
for model in "${@:-opt-1.3b}"; do
  bash .gpu/run.sh actorinfer bench --model "$model" --dummy --prompt-len 512 --gen-len 32 --gpu-batch-size 32 --num-gpu-batches 1 \
     --percent 100 0 100 0 100 0 --repeat 21 --engine compare --json 2>&1 | tee "$out/overhead-$model.txt" | grep -v "^bench: run"
done
