#!/usr/bin/env bash
# On the GPU machine: the device's kernels by name for OPT-6.7B all on the GPU at batch 32 (prompt 512, 32 new tokens),
# without and with --cuda-graphs, and PyTorch's own decoding layer at the same shape, through PyTorch's profiler
# (scripts/gpu/kernels-in-process.py runs the build inside Python). Writes under $OUT: NAME.txt, NAME-kernel-table.json.
# Usage: [RUNS="plain graphs"] [EXTRA="..."] bash scripts/gpu/kernels-in-process.sh   (with .gpu/ carried)
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
. scripts/gpu/in-process-env.sh
gpu67=(bench --dummy --model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0 --prompt-len 512
  --gen-len 32 --repeat 1)
ref=--reference
for run in ${RUNS:-plain graphs}; do
  flag=(); [ "$run" = graphs ] && flag=(--cuda-graphs)
  # shellcheck disable=SC2086
  timeout -k 5 240 python3 scripts/gpu/kernels-in-process.py --name "$run" --out "$out" $ref -- "${gpu67[@]}" "${flag[@]}" ${EXTRA:-} \
    > "$out/$run.txt" 2>&1
  echo "$run: exit $?"
  ref=
done
