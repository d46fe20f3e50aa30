#!/usr/bin/env bash
# Packs a GPU script's outputs for the trip back: everything under OUT (default /tmp/out) but summary.txt and card.txt goes
# into OUT/raw.tar.gz and is removed, so that the call returns three files however many the steps wrote (a device call
# brings back only a few files).
# Usage, last in a GPU script: bash scripts/gpu/pack-out.sh
set -euo pipefail
out=${OUT:-/tmp/out}
cd "$out"
mapfile -t files < <(find . -mindepth 1 -maxdepth 1 ! -name summary.txt ! -name card.txt ! -name raw.tar.gz -printf '%P\n' | sort)
[ "${#files[@]}" -gt 0 ] || exit 0
tar czf raw.tar.gz.part "${files[@]}"
mv raw.tar.gz.part raw.tar.gz
rm -rf -- "${files[@]}"
