#!/usr/bin/env bash
# On the GPU machine, in one call: the node against `bench --policy auto` for the same budgets and workload.
#   1. a node (OPT-6.7B random weights, float16, GPU 40 GiB, CPU 100 GiB) runs a 1,000-request job through /v1/jobs
#      (prompt 512, 32 tokens, greedy); its throughput is 32,000 tokens over the time from the POST to completion;
#   2. the same node runs a seeded job of mixed lengths (prompts of 32 to 1,024 tokens, 8 to 256 new ones);
#   3. a second node with `planner.whole-context = on` runs the mixed job (every block planned for the whole context);
#   4. `bench --policy auto` with the hardware profile the node measured, the same budgets and prompt 512 / 32;
#   5. summary.txt: the ratios, and each block's measured throughput beside the planner's prediction.
# Usage, from the repository root with .gpu/ packed and carried:  bash scripts/gpu/node-vs-bench.sh   (writes under $OUT)
#   MIXED=N sets the mixed job's size (default 300); MODEL, GPU_MEM, CPU_MEM, REQUESTS set the rest; STEPS (job bench mixed
#   whole) picks the steps; the device's used memory is sampled every 250 ms while the job's node runs (job-device-memory.txt,
#   MiB) and summary.txt gives its peak against GPU_MEM; NODE_SETTINGS (e.g. "cuda-graphs = on") goes into every node's configuration and BENCH_FLAGS
#   (e.g. --cuda-graphs) onto bench's command line; MIXED_ENV (e.g. CUDA_LAUNCH_BLOCKING=1) is the mixed nodes' extra environment (both of them); MIXED_LIMIT caps each mixed job's seconds.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
model=${MODEL:-opt-6.7b}
gpu_mem=${GPU_MEM:-40GiB}
cpu_mem=${CPU_MEM:-100GiB}
requests=${REQUESTS:-1000}
mixed=${MIXED:-300}
nvidia-smi -L | head -1 | tee "$out/card.txt"
work=$(mktemp -d)
python3 - "$work" "$requests" "$mixed" <<'PY'
import json, random, sys
work, n, mixed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(2112)
with open(f"{work}/job.jsonl", "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": f"r{i}", "prompt": [2] + [rng.randrange(10, 50000) for _ in range(511)],
                            "max_tokens": 32, "temperature": 0, "ignore_eos": True}) + "\n")
rng = random.Random(2113)
with open(f"{work}/mixed.jsonl", "w") as f:
    for i in range(mixed):
        length = rng.randint(32, 1024)
        f.write(json.dumps({"id": f"m{i}", "prompt": [2] + [rng.randrange(10, 50000) for _ in range(length - 1)],
                            "max_tokens": rng.randint(8, 256), "temperature": 0, "ignore_eos": True}) + "\n")
PY

source scripts/gpu/node-lib.sh
node() { node_start "$1" "$2" "$model" "$gpu_mem" "$cpu_mem" "$3"; }
# Stops the node, and anything a step left running, before the next step starts.
stop() { node_stop "$1"; node_reap; }
# job PORT FILE NAME LIMIT: posts FILE as a job, waits for it (at most LIMIT seconds, and not past a CUDA error in the
# node's log), appends "NAME state seconds tokens" to $out/jobs.txt (node_job, node-lib.sh).
job() { node_job "$1" "$2" "$3" "$4" sk-node "$out/jobs.txt"; }

steps=${STEPS:-job bench mixed whole}
has() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
# Later nodes take the profile the first one measured (the same figures for every ranking in the call).
profile() { mkdir -p "$work/$1"; cp "$work/job/hardware.json" "$work/$1/hardware.json" 2>/dev/null || cp "$work/mixed/hardware.json" "$work/$1/hardware.json" 2>/dev/null; true; }
if has job; then
  node_sample_memory "$out/job-device-memory.txt"
  node job 8101 "" && {
    job 8101 "$work/job.jsonl" job 240
    curl -s http://127.0.0.1:8101/admin/state -H 'Authorization: Bearer sk-node' > "$out/state.json"
    stop job
  }
  node_stop_sampling
fi
cp "$work/job/hardware.json" "$out/hardware.json" 2>/dev/null
has bench && timeout -k 10 300 bash .gpu/run.sh actorinfer bench --model "$model" --dummy --device cuda --dtype float16 --policy auto --cpu-attention auto \
  --hardware "$work/job/hardware.json" --gpu-mem "$gpu_mem" --cpu-mem "$cpu_mem" --prompt-len 512 --gen-len 32 --json ${BENCH_FLAGS:-} \
  > "$out/bench.json" 2> "$out/bench.log"
has bench && node_reap
has mixed && profile mixed && NODE_ENV=${MIXED_ENV:-} node mixed 8102 "" && {
  job 8102 "$work/mixed.jsonl" mixed ${MIXED_LIMIT:-240}
  stop mixed
}
has whole && profile whole && NODE_ENV=${MIXED_ENV:-} node whole 8103 ", whole-context = on" && {
  job 8103 "$work/mixed.jsonl" mixed-whole ${MIXED_LIMIT:-300}
  stop whole
}

python3 - "$out/jobs.txt" "$out" "$gpu_mem" <<'PY' | tee -a "$out/summary.txt"
import json, re, sys, statistics
jobs = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1])}
out = sys.argv[2]
def rate(name):
    state, seconds, tokens = jobs[name]
    return int(tokens) / float(seconds), state, float(seconds), int(tokens)
try:
    bench = json.load(open(f"{out}/bench.json"))
    b = bench.get("total_throughput") or bench.get("median", {}).get("total_throughput")
except Exception as e:
    bench, b = None, None
print(open(f"{out}/card.txt").read().strip())
try:
    used = [int(l) for l in open(f"{out}/job-device-memory.txt") if l.strip().isdigit()]
    unit = {"GiB": 1024, "MiB": 1}
    m = re.fullmatch(r"([\d.]+)(GiB|MiB)", sys.argv[3])
    budget = float(m.group(1)) * unit[m.group(2)] if m else None
    line = f"node job: device memory at most {max(used)} MiB ({max(used) / 1024:.2f} GiB) over {len(used)} samples"
    if budget: line += f", {'within' if max(used) <= budget else 'OVER'} the GPU budget of {sys.argv[3]}"
    print(line)
except (OSError, ValueError):
    pass
if "job" in jobs:
    r, state, s, t = rate("job")
    print(f"node job: {state}, {t} tokens in {s:.2f} s = {r:.1f} token/s")
    if b: print(f"bench --policy auto: {b:.1f} token/s; node / bench = {r / b:.3f}")
if "mixed" in jobs and "mixed-whole" in jobs:
    r1, s1, _, t1 = rate("mixed"); r2, s2, s2s, t2 = rate("mixed-whole")
    print(f"mixed job: {s1}, {t1} tokens, {r1:.1f} token/s; whole context: {s2}, {t2} tokens in {s2s:.1f} s, " +
          (f"{r2:.1f} token/s; ratio {r1 / r2:.2f}" if t2 else "no results yet (the job did not finish)"))
    a = {json.loads(l)["id"]: json.loads(l).get("output_ids") for l in open(f"{out}/mixed-results.jsonl") if l.strip()}
    w = {json.loads(l)["id"]: json.loads(l).get("output_ids") for l in open(f"{out}/mixed-whole-results.jsonl") if l.strip()}
    print(f"mixed outputs identical: {sum(a[k] == w.get(k) for k in a)} of {len(a)}")
pat = re.compile(r"block (\d+): (\d+) tokens in ([\d.]+) s: ([\d.]+) token/s measured, ([\d.]+) predicted for a full block of (\d+) \((\d+) sequences ran\)")
for name in ("job", "mixed", "whole"):
    try: lines = open(f"{out}/{name}.log").read()
    except OSError: continue
    rows = [m.groups() for m in pat.finditer(lines)]
    full = [(float(m[3]), float(m[4])) for m in rows if m[5] == m[6]]
    if full:
        ratios = [meas / pred for meas, pred in full]
        print(f"{name}: {len(rows)} blocks, {len(full)} full; measured / predicted over full blocks: median {statistics.median(ratios):.3f}, "
              f"min {min(ratios):.3f}, max {max(ratios):.3f}")
PY
