#!/usr/bin/env bash
# On the GPU machine (see docs/perf/README.md): CUDA self-test, fixture correctness on CUDA, a first 6.7B bench, a profile.
# Usage: bash scripts/gpu/smoke.sh   (with .gpu/ carried; writes under $OUT)
set -uo pipefail
out=${OUT:-/tmp/out}
ai() { bash .gpu/run.sh actorinfer "$@"; }
nvidia-smi -L | tee "$out/card.txt"
ai version 2>&1 | tee "$out/version.txt"
bash scripts/gpu/fixtures-cuda.sh
ai bench --model opt-6.7b --dummy --prompt-len 512 --gen-len 32 --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0 --repeat 3 --json 2>&1 | tee "$out/bench-6.7b-gpu.txt"
ai profile --device cuda --disk-dir /tmp --output "$out/profile.json" 2>&1 | tee "$out/profile.txt"
