#!/usr/bin/env bash
# On the GPU machine: profile the card, then OPT-30B under a 16 GiB GPU / 100 GiB CPU budget with the planner's
# policy from that profile, with a timeline of one decoding step; first the fixed-policy baseline (FlexGen's policy) on the same card.
set -uo pipefail
out=${OUT:-/tmp/out}
ai() { bash .gpu/run.sh actorinfer "$@"; }
card=$(nvidia-smi -L | tee "$out/card.txt")
case $card in *H200*) name=h200-141gb ;; *) name=h100-80gb ;; esac
ai profile --device cuda --disk-dir /tmp --model opt-30b --output "$out/$name.json" --name "$name" 2>&1 | tee "$out/profile.txt"
case $card in
  *) ai bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --gpu-batch-size 48 --num-gpu-batches 1 \
        --percent 20 80 0 100 0 100 --cpu-attention --repeat 3 --json 2>&1 | tee "$out/bench-30b-fixed.txt" | grep "^bench" ;;
esac
ai bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --policy auto --gpu-mem 16GiB --cpu-mem 100GiB \
   --hardware "$out/$name.json" --repeat 3 --json --trace "$out/trace-30b-auto.json" 2>&1 | tee "$out/bench-30b-auto.txt" | grep "^bench"
# The same with libtorch's allocator growing segments in place instead of caching fixed blocks: how much of the gap
# between the device-reported and the accounted peak is the caching allocator's fragmentation.
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
  bash .gpu/run.sh actorinfer bench --model opt-30b --dummy --prompt-len 512 --gen-len 32 --policy auto --gpu-mem 16GiB --cpu-mem 100GiB \
   --hardware "$out/$name.json" --repeat 3 --json 2>&1 | tee "$out/bench-30b-auto-expandable.txt" | grep -E "^bench|device_reported_peak_bytes"
