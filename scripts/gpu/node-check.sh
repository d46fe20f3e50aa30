#!/usr/bin/env bash
# On the GPU machine: a node on CUDA (hocon/single-gpu-node.conf, OPT-1.3B with random weights), one completion
# over HTTP, a 32-request job, and the budgets the memory-pressure actor took from the device's telemetry.
set -uo pipefail
out=${OUT:-/tmp/out}
nvidia-smi -L | tee "$out/card.txt"
bash .gpu/run.sh actorinfer node --config hocon/single-gpu-node.conf --model opt-1.3b --data-dir /tmp/gpu-node \
  --port 8000 --api-key sk-gpu > "$out/node.log" 2>&1 &
node=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:8000/readyz >/dev/null && break; sleep 1; done
auth=(-H 'Authorization: Bearer sk-gpu' -H 'Content-Type: application/json')
curl -s http://127.0.0.1:8000/v1/completions "${auth[@]}" -d '{"model": "opt-1.3b", "prompt": [2, 100, 200, 300], "max_tokens": 8, "temperature": 0}' | tee "$out/completion.json"; echo
python3 -c "
import json
for i in range(32): print(json.dumps({'prompt': [2] + [100 + (i * 7 + j) % 5000 for j in range(127)], 'max_tokens': 32, 'temperature': 0, 'ignore_eos': True}))" > /tmp/job.jsonl
start=$(date +%s.%N)
id=$(curl -s http://127.0.0.1:8000/v1/jobs "${auth[@]}" --data-binary @/tmp/job.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for i in $(seq 1 120); do
  state=$(curl -s http://127.0.0.1:8000/v1/jobs/$id "${auth[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$state" = completed ] && break; sleep 0.5
done
end=$(date +%s.%N)
echo "job $id: $state in $(python3 -c "print(round($end - $start, 2))") s" | tee "$out/job.txt"
curl -s http://127.0.0.1:8000/admin/state -H 'Authorization: Bearer sk-gpu' | tee "$out/state.json"; echo
curl -s http://127.0.0.1:8000/metrics -H 'Authorization: Bearer sk-gpu' | grep -E "^actorinfer_(memory_budget|tokens_generated)" | tee "$out/metrics.txt"
kill $node; wait $node 2>/dev/null
tail -5 "$out/node.log"
