#!/usr/bin/env bash
# On the GPU machine, in one call: the node under pressure against `bench --policy auto` for each phase's budget.
#   pressed:    a node (OPT-6.7B random weights, float16, CPU 100 GiB) runs a 1,000-request job through /v1/jobs (prompt
#               512, 32 tokens, greedy) while /admin/pressure sets its GPU budget 40 -> 12 -> 24 -> 40 GiB, each change
#               once a quarter of the job more is done; every phase's throughput is its completed requests' tokens over
#               its time;
#   plain:      the same job on a node without pressure (for the greedy outputs, which must be identical);
#   bench:      `bench --policy auto` at 40, 12 and 24 GiB (BENCHES) with the profile the first node measured (the 12 GiB
#               one measured once after its warm-up: its blocks take a minute each);
#   compressed: the pressed run with compression allowed (`planner.compress-cache = on`) on a job of C_REQUESTS (3,000:
#               the compressed block at 12 GiB holds over 1,000 sequences); cbench: `bench --compress-cache` per budget;
#   big:        OPT-30B on a node with 16 GiB GPU / 100 GiB CPU (a job of REQUESTS30, 192 requests; or, with BLOCKS30=N,
#               N full blocks of the size the node planned) against bench at the same budgets.
# STEPS picks them (default "pressed plain bench"); HARDWARE=FILE skips measuring the profile. NODE_SETTINGS (e.g. "batch-invariant = on") goes into every node's
# settings, BENCH_FLAGS (e.g. --batch-invariant) onto every bench. Every program a step left running (a bench past its limit) is
# killed before the next step starts, so that no step runs beside another.
# summary.txt: each phase's node / bench ratio, the tier bytes the node's /admin/state reported after each change, the
# honour lines the node logged, lost or duplicated requests, and whether the outputs match the unpressured run.
# Usage, from the repository root with .gpu/ packed and carried:  bash scripts/gpu/node-pressure.sh   (writes under $OUT)
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
requests=${REQUESTS:-1000}
c_requests=${C_REQUESTS:-3000}
requests30=${REQUESTS30:-192}
limit=${LIMIT:-900}            # seconds a job may run before it is given up
bench_limit=${BENCH_LIMIT:-400} # seconds each bench may run
steps=${STEPS:-pressed plain bench}
has() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
nvidia-smi -L | head -1 | tee "$out/card.txt"
echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)" | tee -a "$out/card.txt"
work=$(mktemp -d)
python3 - "$work" "$requests" "$c_requests" "$requests30" <<'PY'
import json, random, sys
work = sys.argv[1]
for name, n in (("job", int(sys.argv[2])), ("cjob", int(sys.argv[3])), ("job30", int(sys.argv[4]))):
    rng = random.Random(2112)
    with open(f"{work}/{name}.jsonl", "w") as f:
        for i in range(n):
            # The chosen tokens' log-probabilities come back too: where two runs' greedy tokens part, they show how near
            # the two choices were.
            f.write(json.dumps({"id": f"r{i}", "prompt": [2] + [rng.randrange(10, 50000) for _ in range(511)],
                                "max_tokens": 32, "temperature": 0, "ignore_eos": True, "logprobs": 1}) + "\n")
PY
auth=(-H 'Authorization: Bearer sk-node')
# HARDWARE=FILE: a profile an earlier call measured on this machine, taken by every node and bench instead of measuring one.
[ -n "${HARDWARE:-}" ] && { mkdir -p "$work/first"; cp "$HARDWARE" "$work/first/hardware.json"; }

source scripts/gpu/node-lib.sh
reap() { node_reap; }
# node NAME PORT MODEL GPU EXTRA: node_start with 100 GiB of CPU, the first node's hardware profile taken by later ones.
node() { mkdir -p "$work/$1"; cp "$work/first/hardware.json" "$work/$1/hardware.json" 2>/dev/null; node_start "$1" "$2" "$3" "$4" 100GiB "$5"; }
stop() { node_stop "$1"; }
done_count() { curl -s "http://127.0.0.1:$1/v1/jobs/$2" "${auth[@]}" | python3 -c 'import json,sys; c=json.load(sys.stdin)["counts"]; print(c["total"]-c["pending"])'; }
state() { curl -s "http://127.0.0.1:$1/v1/jobs/$2" "${auth[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }

# run PORT NAME "GIB..." [JOB N]: posts the job (job.jsonl of $requests by default); at each quarter (by completed
# requests) sets the next GPU budget; writes NAME-phases.txt lines "budget start-seconds end-seconds requests" and
# NAME-results.jsonl.
run() {
  local port=$1 name=$2 budgets=($3) file=${4:-job} requests=${5:-$requests} id start phase=0 t0 n0 now n
  # WARMUP=N: the node first serves a job of N requests (untimed), as a node that has served before.
  if [ "${WARMUP:-0}" -gt 0 ]; then
    id=$(head -n "$WARMUP" "$work/$file.jsonl" | sed 's/"id": "r/"id": "w/' | curl -s "http://127.0.0.1:$port/v1/jobs" "${auth[@]}" --data-binary @- | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    until s=$(state "$port" "$id"); [ "$s" = completed ] || [ "$s" = failed ]; do sleep 0.2; done
  fi
  id=$(curl -s "http://127.0.0.1:$port/v1/jobs" "${auth[@]}" --data-binary @"$work/$file.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
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
  curl -s "http://127.0.0.1:$port/admin/state" "${auth[@]}" > "$out/$name-state-end.json"
}
bench() { # NAME GIB MODEL EXTRA...   ($REPEAT measured runs after the warm-up, 3 by default)
  local name=$1 gib=$2 model=$3; shift 3
  timeout -k 10 "$bench_limit" bash .gpu/run.sh actorinfer bench --model "$model" --dummy --device cuda --dtype float16 --policy auto --cpu-attention auto \
    --hardware "$work/first/hardware.json" --gpu-mem "${gib}GiB" --cpu-mem 100GiB --prompt-len 512 --gen-len 32 --repeat "${REPEAT:-3}" --json ${BENCH_FLAGS:-} "$@" \
    > "$out/bench-$name.json" 2> "$out/bench-$name.log"
  reap
}
# The first node measures the profile every later step ranks with; a run without the pressed step measures it on its own.
first() { [ -f "$work/first/hardware.json" ] || { node first 8200 opt-6.7b 40GiB "" && stop first; reap; }; }

if has pressed; then node first 8201 opt-6.7b 40GiB "" && { run 8201 pressed "12 24 40"; stop first; }; reap; fi
if has plain; then node plain 8202 opt-6.7b 40GiB "" && { run 8202 plain ""; stop plain; }; reap; fi
if has bench; then
  first
  for gib in ${BENCHES-40 12 24}; do if [ "$gib" = 12 ]; then REPEAT=1 bench "$gib" "$gib" opt-6.7b; else bench "$gib" "$gib" opt-6.7b; fi; done
fi
if has compressed; then
  first
  node compressed 8203 opt-6.7b 40GiB ", compress-cache = on" && { run 8203 compressed "12 24 40" cjob "$c_requests"; stop compressed; }; reap
fi
if has cbench; then
  first
  for gib in ${BENCHES-40 12 24}; do if [ "$gib" = 12 ]; then REPEAT=1 bench "c$gib" "$gib" opt-6.7b --compress-cache; else bench "c$gib" "$gib" opt-6.7b --compress-cache; fi; done
fi
if has big; then
  # FIRST=0: the OPT-30B node measures the profile itself (bench then takes it), without the OPT-6.7B node's start.
  [ "${FIRST:-1}" = 0 ] || first
  if node big 8204 opt-30b 16GiB ""; then
    # BLOCKS30: a job of that many full blocks of the size the node planned for this workload (a partial last block
    # streams every weight for fewer sequences: it measures the job's length, not the node against bench).
    if [ -n "${BLOCKS30:-}" ]; then
      size=$(curl -s "http://127.0.0.1:8204/admin/state" "${auth[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["planner"].get("block_size") or 0)')
      if [ "${size:-0}" -gt 0 ] && [ $(( BLOCKS30 * size )) -le "$requests30" ]; then
        requests30=$(( BLOCKS30 * size )); head -n "$requests30" "$work/job30.jsonl" > "$work/job30b.jsonl"; mv "$work/job30b.jsonl" "$work/job30.jsonl"
      fi
      echo "$requests30" > "$out/big-requests.txt"
    fi
    run 8204 big "" job30 "$requests30"; stop big
    [ -f "$work/first/hardware.json" ] || { mkdir -p "$work/first"; cp "$work/big/hardware.json" "$work/first/hardware.json"; }
  fi
  reap
  REPEAT=1 bench 30b 16 opt-30b
fi

[ -f "$out/big-requests.txt" ] && requests30=$(cat "$out/big-requests.txt")
python3 - "$out" "$requests" "$c_requests" "$requests30" <<'PY' | tee -a "$out/summary.txt"
import json, sys, os
out, n, cn, n30 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
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
        try: print(f"  bench policy: {json.load(open(f'{out}/bench-{prefix + gib}.json')).get('node_planner_policy')}")
        except Exception: pass
    lines = [json.loads(l) for l in open(f"{out}/{name}-results.jsonl") if l.strip()]
    got = {l["id"]: l.get("output_ids") for l in lines}
    complete = sum(1 for l in lines if len(l.get("output_ids") or []) == 32)
    print(f"{name}: {len(lines)} result lines, {len(got)} distinct ids, {complete} with 32 tokens, for {cn if name == 'compressed' else n} requests")
    try:
        runs = []  # the blocks' policies in order, each with how many blocks in a row took it
        for line in open(f"{out}/{'first' if name == 'pressed' else name}.log"):
            if "budget change honoured" in line or "has not moved" in line: print("  " + line.split("] ", 2)[-1].strip())
            if "/scheduler] block " in line and ", policy " in line:
                policy = line.split(", policy ", 1)[1].strip()
                if runs and runs[-1][0] == policy: runs[-1][1] += 1
                else: runs.append([policy, 1])
        for policy, count in runs: print(f"  {count} block(s): {policy}")
    except OSError: pass
    if name == "pressed" and os.path.exists(f"{out}/plain-results.jsonl"):
        ref = outputs("plain")
        print(f"greedy outputs identical to the unpressured run: {sum(got[k] == ref.get(k) for k in got)} of {len(got)}")
        # Where they part: the log-probability each run gave its own choice there (near-equal values: a near-tie).
        lp = {l["id"]: l.get("output_logprobs") for l in lines}
        lpref = {json.loads(l)["id"]: json.loads(l).get("output_logprobs") for l in open(f"{out}/plain-results.jsonl") if l.strip()}
        gaps = []
        for k in got:
            if got[k] == ref.get(k) or not lp.get(k) or not lpref.get(k): continue
            i = next(j for j, (x, y) in enumerate(zip(got[k], ref[k])) if x != y)
            gaps.append(abs(lp[k][i] - lpref[k][i]))
        if gaps:
            gaps.sort()
            print(f"  at the first differing token, |logprob(pressed's choice) - logprob(unpressured's choice)|: median {gaps[len(gaps) // 2]:.4f}, max {gaps[-1]:.4f}")
if os.path.exists(f"{out}/big-phases.txt"):
    (_, seconds, done), = phases("big")[-1:]
    rate = done * 32 / seconds
    print(f"OPT-30B node: {done} of {n30} requests in {seconds:.1f} s")
    b = bench("30b")
    print(f"OPT-30B node, 16 GiB / 100 GiB: {rate:.1f} token/s; bench --policy auto {b and round(b, 1)}; ratio {b and round(rate / b, 3)}")
PY
