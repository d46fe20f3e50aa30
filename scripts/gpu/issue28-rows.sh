#!/usr/bin/env bash
# On the GPU machine, in one call (about 6 to 7 minutes): issue 28's rows 1 and 2 with FlexGen beside ours.
#   a/: OPT-6.7B all on the GPU, 32 x 1, against FlexGen; the block `--policy auto` picks under 40 GiB / 100 GiB
#       (block-sizes.sh, STEPS="gpu67 flexgen auto67"; CHECKS=1 adds the kernels' checks and the CUDA fixtures first)
#   b/: OPT-30B 20/80, cache and activations on the CPU, CPU attention, 48 x 1: FlexGen, and ours with the weights spread
#       (vs-flexgen.sh, STEPS="fixed30 fixed30-spread" FIXED30_RULE=0, one measured run after a warm-up)
# Needs .gpu/ (pack.sh) and .baselines/flexgen carried. Writes under $OUT: summary.txt (both parts' figures) and
# raw.tar.gz (a/ and b/ whole), since a device call returns only a few files.
# Usage: bash scripts/gpu/issue28-rows.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
(nvidia-smi -L 2>/dev/null || echo "no GPU") | tee "$out/card.txt"
first="gpu67 flexgen auto67"
[ "${CHECKS:-0}" = 1 ] && first="checks fixtures $first"
OUT=$out/a STEPS="$first" timeout 300 bash scripts/gpu/block-sizes.sh > "$out/a-stdout.txt" 2>&1
OUT=$out/b STEPS="fixed30 fixed30-spread" FIXED30_RULE=0 FIXED30_REPEAT=1 timeout 330 bash scripts/gpu/vs-flexgen.sh > "$out/b-stdout.txt" 2>&1
cat "$out/a/summary.txt" "$out/b/summary.txt" > "$out/summary.txt" 2>/dev/null
(cd "$out" && tar czf /tmp/issue28-rows.tar.gz a b a-stdout.txt b-stdout.txt && rm -rf a b a-stdout.txt b-stdout.txt &&
  mv /tmp/issue28-rows.tar.gz raw.tar.gz)
cat "$out/summary.txt"
exit 0
