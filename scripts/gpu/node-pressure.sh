#!/usr/bin/env bash
# On the GPU machine, in one call: the node under pressure against `bench --policy auto` for each phase's budget.
#   1. a node (OPT-6.7B random weights, float16, CPU 100 GiB) runs a 1,000-request job through /v1/jobs (prompt 512,
#      32 tokens, greedy) while /admin/pressure sets its GPU budget 40 -> 12 -> 24 -> 40 GiB, each change once a
#      quarter of the job more is done; every phase's throughput is its completed requests' tokens over its time;
#   2. the same job on a node without pressure (for the greedy outputs, which must be identical);
#   3. `bench --policy auto` at 40, 12 and 24 GiB with the profile the first node measured;
#   4. with COMPRESS=1, steps 1 and 3 again with compression allowed (`planner.compress-cache = on`, `bench --compress-cache`);
#   PLAIN=0 skips step 2; BENCHES (default "40 12 24") names the budgets of step 3.
#   5. with MODEL30=1, OPT-30B on a node with 16 GiB GPU / 100 GiB CPU against bench at the same budgets (prompt 512, 32).
# summary.txt: each phase's node / bench ratio, the tier bytes the node's /admin/state reported after each change, the
# honour times from the node's metrics, lost or duplicated requests, and whether the outputs match the unpressured run.
# Usage, from the repository root with .gpu/ packed and carried:  bash scripts/gpu/node-pressure.sh   (writes under $OUT)
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
requests=${REQUESTS:-1000}
limit=${LIMIT:-900}            # seconds a job may run before it is given up
bench_limit=${BENCH_LIMIT:-400} # seconds each bench may run
nvidia-smi -L | head -1 | tee "$out/card.txt"
work=$(mktemp -d)
python3 - "$work" "$requests" <<'PY'
import json, random, sys
work, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(2112)
with open(f"{work}/job.jsonl", "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": f"r{i}", "prompt": [2] + [rng.randrange(10, 50000) for _ in range(511)],
                            "max_tokens": 32, "temperature": 0, "ignore_eos": True}) + "\n")
PY
auth=(-H 'Authorization: Bearer sk-node')

source scripts/gpu/node-lib.sh
# node NAME PORT MODEL GPU EXTRA: node_start with 100 GiB of CPU, the first node's hardware profile taken by later ones.
node() { mkdir -p "$work/$1"; cp "$work/first/hardware.json" "$work/$1/hardware.json" 2>/dev/null; node_start "$1" "$2" "$3" "$4" 100GiB "$5"; }
stop() { node_stop "$1"; }
done_count() { curl -s "http://127.0.0.1:$1/v1/jobs/$2" "${auth[@]}" | python3 -c 'import json,sys; c=json.load(sys.stdin)["counts"]; print(c["total"]-c["pending"])'; }
state() { curl -s "http://127.0.0.1:$1/v1/jobs/$2" "${auth[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }

# run PORT NAME "GIB..." : posts the job; at each quarter (by completed requests) sets the next GPU budget; writes
# NAME-phases.txt lines "budget start-seconds end-seconds requests" and NAME-results.jsonl.
run() {
  local port=$1 name=$2 budgets=($3) id start phase=0 t0 n0 now n
  id=$(curl -s "http://127.0.0.1:$port/v1/jobs" "${auth[@]}" --data-binary @"$work/job.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  start=$(date +%s.%N); t0=$start; n0=0
  : > "$out/$name-phases.txt"
  while :; do
    n=$(done_count "$port" "$id"); now=$(date +%s.%N)
    if [ "$phase" -lt "${#budgets[@]}" ] && [ "$n" -ge $(( (phase + 1) * requests / (${#budgets[@]} + 1) )) ]; then
      echo "${budgets[$phase]:-start} $t0 $now $((n - n0))" >> "$out/$name-phases.txt"
      curl -s "http://127.0.0.1:$port/admin/pressure" "${auth[@]}" -d "{\"tier\": \"gpu\", \"budget\": \"${budgets[$phase]}GiB\"}" > /dev/null
      sleep 0.5; curl -s "http://127.0.0.1:$port/admin/state" "${auth[@]}" > "$out/$name-state-$phase.json"
      phase=$((phase + 1)); t0=$now; n0=$n
    fi
    s=$(state "$port" "$id"); [ "$s" = completed ] || [ "$s" = failed ] && break
    python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $start > $limit else 1)" && { echo "$name: stopped after $limit s" >> "$out/summary.txt"; break; }
    sleep 0.2
  done
  echo "last $t0 $(date +%s.%N) $(( $(done_count "$port" "$id") - n0 ))" >> "$out/$name-phases.txt"
  curl -s "http://127.0.0.1:$port/v1/jobs/$id/results" "${auth[@]}" > "$out/$name-results.jsonl"
  curl -s "http://127.0.0.1:$port/metrics" "${auth[@]}" > "$out/$name-metrics.txt"
}
bench() { # NAME GIB MODEL EXTRA...
  local name=$1 gib=$2 model=$3; shift 3
  timeout "$bench_limit" bash .gpu/run.sh actorinfer bench --model "$model" --dummy --device cuda --dtype float16 --policy auto --cpu-attention auto \
    --hardware "$work/first/hardware.json" --gpu-mem "${gib}GiB" --cpu-mem 100GiB --prompt-len 512 --gen-len 32 --json "$@" \
    > "$out/bench-$name.json" 2> "$out/bench-$name.log"
}

node first 8201 opt-6.7b 40GiB "" && { run 8201 pressed "12 24 40"; stop first; }
[ "${PLAIN:-1}" = 1 ] && node plain 8202 opt-6.7b 40GiB "" && { run 8202 plain ""; stop plain; }
for gib in ${BENCHES-40 12 24}; do bench "$gib" "$gib" opt-6.7b; done
if [ "${COMPRESS:-0}" = 1 ]; then
  node compressed 8203 opt-6.7b 40GiB ", compress-cache = on" && { run 8203 compressed "12 24 40"; stop compressed; }
  for gib in 40 12 24; do bench "c$gib" "$gib" opt-6.7b --compress-cache; done
fi
if [ "${MODEL30:-0}" = 1 ]; then
  node big 8204 opt-30b 16GiB "" && { run 8204 big ""; stop big; }
  bench 30b 16 opt-30b
fi

python3 - "$out" "$requests" <<'PY' | tee -a "$out/summary.txt"
import json, sys, os
out, n = sys.argv[1], int(sys.argv[2])
print(open(f"{out}/card.txt").read().strip())
def bench(name):
    try:
        b = json.load(open(f"{out}/bench-{name}.json"))
        return b.get("total_throughput") or b.get("median", {}).get("total_throughput")
    except Exception: return None
def phases(name):
    rows = [l.split() for l in open(f"{out}/{name}-phases.txt")]
    return [(r[0], float(r[2]) - float(r[1]), int(r[3])) for r in rows]
def outputs(name):
    return {json.loads(l)["id"]: json.loads(l).get("output_ids") for l in open(f"{out}/{name}-results.jsonl") if l.strip()}
for name, prefix in (("pressed", ""), ("compressed", "c")):
    if not os.path.exists(f"{out}/{name}-phases.txt"): continue
    budgets = ["40", "12", "24", "40"]
    for (label, seconds, done), gib in zip(phases(name), budgets):
        rate = done * 32 / seconds if seconds > 0 else 0
        b = bench(prefix + gib)
        print(f"{name} phase at {gib} GiB: {done} requests in {seconds:.1f} s = {rate:.1f} token/s; bench --policy auto {b and round(b, 1)}; ratio {b and round(rate / b, 3)}")
    got = outputs(name)
    print(f"{name}: {len(got)} results for {n} requests; ids distinct: {len(set(got)) == len(got)}")
    if name == "pressed" and os.path.exists(f"{out}/plain-results.jsonl"):
        ref = outputs("plain")
        print(f"greedy outputs identical to the unpressured run: {sum(got[k] == ref.get(k) for k in got)} of {len(got)}")
if os.path.exists(f"{out}/big-phases.txt"):
    (_, seconds, done), = phases("big")[-1:]
    rate = done * 32 / seconds
    b = bench("30b")
    print(f"OPT-30B node, 16 GiB / 100 GiB: {rate:.1f} token/s; bench --policy auto {b and round(b, 1)}; ratio {b and round(rate / b, 3)}")
PY
