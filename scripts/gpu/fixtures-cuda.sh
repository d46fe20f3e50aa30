#!/usr/bin/env bash
# On the GPU machine: the fixtures' greedy tokens on CUDA (float32 and float16) against the reference, appended to
# $OUT/fixtures.txt; with EFFICIENT=1 (the default) each fixture again with `--decode-attention efficient` (the fused
# memory-efficient kernel: a check that its masking is right, not an exactness claim). RUNS picks the runs instead, each
# TYPE[:MODE] with MODE efficient (as above), batch-invariant (--batch-invariant), cpu-attention (the cache on the CPU,
# attended there: --percent 100 0 0 100 100 0 --cpu-attention on), cuda-graphs (--cuda-graphs) or cuda-graphs-efficient
# (--cuda-graphs --decode-attention efficient). MODELS picks the fixtures (default: all four).
# Usage: bash scripts/gpu/fixtures-cuda.sh [NOTE]   (with .gpu/ carried; NOTE is printed with each line)
set -uo pipefail
out=${OUT:-/tmp/out}
note=${1:-}
ai() { bash .gpu/run.sh actorinfer "$@"; }
for m in ${MODELS:-opt-tiny opt-tiny-postln llama-tiny llama-tiny-tied}; do
  [ -f .gpu/fixtures/$m/expected.jsonl ] || continue
  python3 scripts/gpu/fixture-requests.py "$m"
  runs="float32 float16"
  [ "${EFFICIENT:-1}" = 1 ] && runs="$runs float32:efficient float16:efficient"
  runs=${RUNS:-$runs}
  for run in $runs; do
    dt=${run%%:*}; extra=()
    case "$run" in
      "$dt") ;;
      *:batch-invariant) extra=(--batch-invariant) ;;
      *:cpu-attention) extra=(--percent 100 0 0 100 100 0 --cpu-attention on) ;;
      *:cuda-graphs) extra=(--cuda-graphs) ;;
      *:cuda-graphs-efficient) extra=(--cuda-graphs --decode-attention efficient) ;;
      *) extra=(--decode-attention "${run#*:}") ;;
    esac
    ai generate --model .gpu/fixtures/$m --input /tmp/in-$m.jsonl --output /tmp/out-$m-$dt.jsonl --device cuda --dtype $dt --batch-size 8 "${extra[@]}" 2>&1 | tail -1
    python3 - "$m" "$dt" "$note${extra[*]:+ ${extra[*]}}" <<'PY' | tee -a "$out/fixtures.txt"
import json, sys
m, dt, note = sys.argv[1], sys.argv[2], sys.argv[3].strip()
exp = [json.loads(l) for l in open(f".gpu/fixtures/{m}/expected.jsonl")]
got = [json.loads(l) for l in open(f"/tmp/out-{m}-{dt}.jsonl")]
same = sum(e["greedy_new_tokens"] == g["output_ids"] for e, g in zip(exp, got))
print(f"{m} cuda {dt}{f' ({note})' if note else ''}: {same}/{len(exp)} prompts reproduce the reference greedy tokens")
PY
  done
done
