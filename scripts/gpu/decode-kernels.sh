#!/usr/bin/env bash
# On the GPU machine: decoding attention by batched products (the default) against cuDNN's kernel, same build, same call.
#   1. the fixtures' greedy tokens on CUDA (float32 and float16) with the default;
#   2. OPT-6.7B benches (random weights), each setting run with both kernels, alternating which goes first;
# Usage: bash scripts/gpu/decode-kernels.sh   (with .gpu/ carried; writes under $OUT)
set -uo pipefail
out=${OUT:-/tmp/out}
ai() { bash .gpu/run.sh actorinfer "$@"; }
nvidia-smi -L | tee "$out/card.txt"
bash scripts/gpu/fixtures-cuda.sh "decoding attention by products"
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
