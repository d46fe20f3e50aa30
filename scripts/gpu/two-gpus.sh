#!/usr/bin/env bash
# On a machine with two GPUs, in one call: the cluster's scaling (issue 26). The same job, OPT-6.7B random weights
# (REQUESTS 2,000 requests of PROMPT_LEN 512 random token ids and GEN_LEN 32 new tokens, greedy, through /v1/jobs),
# runs on
#   1. `scripts/cluster-up --workers 1 --gpus`: a gateway and one worker on GPU 0;
#   2. `scripts/cluster-up --workers 2 --gpus`: a gateway and one worker per GPU (CUDA_VISIBLE_DEVICES 0 and 1);
#   3. the same two workers with worker 2 SIGKILLed once FAIL_AT (30%) of a job is done: every request must complete
#      once, the rest on GPU 0.
# Each worker computes in float16 under GPU_MEM (40 GiB) and CPU_MEM (100 GiB) with the search's own geometry bounds,
# as the single-GPU node scripts start one; every worker takes the hardware profile the first one measured, so the same
# figures rank their policies. Throughput is the generated tokens over the time from the POST to completion; each
# setting runs REPS (2) jobs, the first on fresh processes. summary.txt under $OUT: every job, the ratio (two workers /
# one) of the first jobs and of the medians of the later ones, the failover's counts (results, distinct ids, ids twice,
# requests re-dispatched) and whether its tokens and the two-worker tokens are those of the one-worker run.
# The gateway keeps its journal in PostgreSQL where a server can be had (pg_ctl on PATH or ACTORINFER_POSTGRES_CONNECTION);
# the GPU machines have no packages and no network, so there it falls back to SQLite in the gateway's data folder, and
# the summary says which (the journal is off the measured path: workers keep none).
# Usage, from the repository root with .gpu/ packed and carried:  bash scripts/gpu/two-gpus.sh   (writes under $OUT)
# On one GPU (two workers sharing it, a dry run): SHARE_GPU=1 bash scripts/gpu/two-gpus.sh
# On a CPU machine (a check of the script):  CLI=scripts/actorinfer DEVICE=cpu DTYPE=float32 GPU_MEM=0 CPU_MEM=4GiB \
#   MODEL=models/opt-tiny REQUESTS=300 PROMPT_LEN=24 GEN_LEN=16 BOUNDS=8x4 OUT=/tmp/out bash scripts/gpu/two-gpus.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
model=${MODEL:-opt-6.7b}
device=${DEVICE:-cuda}
dtype=${DTYPE:-float16}
gpu_mem=${GPU_MEM:-40GiB}
cpu_mem=${CPU_MEM:-100GiB}
requests=${REQUESTS:-2000}
prompt_len=${PROMPT_LEN:-512}
gen_len=${GEN_LEN:-32}
reps=${REPS:-2}
limit=${LIMIT:-400}
fail_at=${FAIL_AT:-0.3}
bounds=${BOUNDS:-8192x8192}
port=${PORT:-8361}
key=sk-node
cli=${CLI:-bash .gpu/run.sh actorinfer}
# Unpack the bundle once, before three processes would each start to.
$cli --version > /dev/null 2>&1 || true
(nvidia-smi -L 2>/dev/null || true) | tee "$out/card.txt"
[ -s "$out/card.txt" ] || echo "no GPU ($device)" > "$out/card.txt"
gpus=0
[ "$device" = cuda ] && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$device" = cuda ] && [ "${SHARE_GPU:-0}" != 1 ] && [ "$gpus" -lt 2 ]; then
  echo "this machine has $gpus GPU(s): two workers need two (SHARE_GPU=1 runs both on one)" | tee -a "$out/summary.txt"
  exit 2
fi
work=$(mktemp -d)
export ACTORINFER_CLUSTER_DIR=$work/cluster ACTORINFER_CLI=$cli ACTORINFER_CLUSTER_TIMEOUT=900
trap 'scripts/cluster-down > /dev/null 2>&1' EXIT

journal=sqlite
if [ -n "${ACTORINFER_POSTGRES_CONNECTION:-}" ] || command -v pg_ctl > /dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl > /dev/null 2>&1; then
  journal=postgresql
fi
echo "gateway journal: $journal" | tee -a "$out/summary.txt"

python3 scripts/gpu/prompts.py "$work/job.jsonl" "$requests" "$prompt_len" "$gen_len" 2612 "$model"
cat > "$work/worker.conf" <<CONF
actorinfer {
  dtype = "$dtype"
  memory { gpu-budget = "$gpu_mem", cpu-budget = "$cpu_mem" }
  scheduler { max-gpu-batch-size = ${bounds%x*}, max-gpu-batches = ${bounds#*x} }
  planner { max-block-size = 8192 }
}
CONF

# Jobs of thousands of requests in one POST (the default tenant may queue 1,024).
echo 'actorinfer.http.tenant-defaults.max-queued-requests = 100000' > "$work/gateway.conf"

source scripts/gpu/node-lib.sh
# up N: a gateway and N workers (one per GPU, or all on GPU 0 with SHARE_GPU=1, or on the CPU), fresh processes and
# folders, every worker with the profile the first worker measured.
up() {
  local n=$1 args=(--workers "$1" --model "$model" --port "$port" --api-key "$key" --worker-conf "$work/worker.conf" --gateway-conf "$work/gateway.conf" --journal "$journal")
  scripts/cluster-down > /dev/null 2>&1
  rm -rf "$ACTORINFER_CLUSTER_DIR"
  if [ -f "$work/hardware.json" ]; then
    for i in $(seq 1 "$n"); do mkdir -p "$ACTORINFER_CLUSTER_DIR/worker-$i"; cp "$work/hardware.json" "$ACTORINFER_CLUSTER_DIR/worker-$i/"; done
  fi
  if [ "$device" = cuda ] && [ "${SHARE_GPU:-0}" = 1 ]; then
    args+=(--gpus "$(printf '0%.0s,' $(seq 1 "$n") | sed 's/,$//')")
  elif [ "$device" = cuda ]; then
    args+=(--gpus)
  fi
  scripts/cluster-up "${args[@]}" > /dev/null 2> "$out/cluster-up-$n.log" || { echo "cluster-up --workers $n failed (see cluster-up-$n.log)" | tee -a "$out/summary.txt"; return 1; }
  [ -f "$work/hardware.json" ] || cp "$ACTORINFER_CLUSTER_DIR/worker-1/hardware.json" "$work/hardware.json" 2>/dev/null || true
}
keep_logs() { for f in "$ACTORINFER_CLUSTER_DIR"/*.log; do [ -f "$f" ] && cp "$f" "$out/$1-$(basename "$f")"; done; }
state() { curl -s "http://127.0.0.1:$port/admin/state" -H "Authorization: Bearer $key"; }
job() { node_job "$port" "$work/job.jsonl" "$1" "$limit" "$key" "$work/jobs.txt"; }

# 1. One worker.
if up 1; then
  for r in $(seq 1 "$reps"); do job "one-$r"; done
  state > "$out/one-state.json"
fi
keep_logs one

# 2. Two workers.
if up 2; then
  for r in $(seq 1 "$reps"); do job "two-$r"; done
  state > "$out/two-state.json"

  # 3. Failover: worker 2 SIGKILLed once FAIL_AT of the job is done.
  # One process polls (a python start per poll took seconds on a loaded machine): the job's progress, and what the gateway
  # has assigned to worker 2 and not seen finished; worker 2 is killed while it holds some of the job.
  python3 - "$port" "$key" "$work/job.jsonl" "$fail_at" "$limit" "$ACTORINFER_CLUSTER_DIR" "$out" "$work/jobs.txt" <<'PY' | tee -a "$out/summary.txt"
import json, os, signal, sys, time, urllib.request
port, key, job, fail_at, limit, cluster, out, jobs = sys.argv[1:]
fail_at, limit = float(fail_at), float(limit)
url = f"http://127.0.0.1:{port}"
def call(path, data=None):
    req = urllib.request.Request(url + path, data=data, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()
port2 = open(f"{cluster}/worker-2.cluster-port").read().strip()
pid2 = int(open(f"{cluster}/worker-2.pid").read().strip())
start = time.time()
jid = json.loads(call("/v1/jobs", open(job, "rb").read()))["id"]
killed, state = None, "missing"
with open(f"{out}/failover-polls.txt", "w") as polls:
    while True:
        status = json.loads(call(f"/v1/jobs/{jid}"))
        state, progress = status["state"], status.get("progress", 0)
        held = sum(w.get("assigned", 0) for w in json.loads(call("/admin/state")).get("workers", [])
                   if w.get("address", "").endswith(f":{port2}"))
        polls.write(f"{time.time() - start:.2f} {state} {progress} worker-2 holds {held}\n")
        if killed is None and state != "completed" and held > 0 and progress >= fail_at:
            os.kill(pid2, signal.SIGKILL)
            killed = progress
            print(f"worker-2 SIGKILLed at progress {progress} holding {held} requests: {json.dumps(status['counts'])}")
        if state in ("completed", "failed"):
            break
        if time.time() - start > limit:
            state = f"stopped-{state}"
            break
        time.sleep(0.1)
seconds = time.time() - start
if killed is None:
    print("failover: the job ended before worker-2 was killed (a longer job is needed)")
results = call(f"/v1/jobs/{jid}/results")
open(f"{out}/failover-results.jsonl", "wb").write(results)
tokens = sum(len(json.loads(l).get("output_ids", [])) for l in results.decode().splitlines() if l.strip())
with open(jobs, "a") as f:
    f.write(f"failover {state} {seconds} {tokens}\n")
PY
  sleep 8  # the failure detector has downed worker 2 by then
  state > "$out/failover-state.json"
fi
keep_logs two
cp "$work/worker.conf" "$work/gateway.conf" "$out/"

python3 scripts/gpu/jobs-summary.py "$work/jobs.txt" "$out" "$reps" one "one worker" two "two workers" failover | tee -a "$out/summary.txt"
python3 - "$out" "$requests" <<'PY' | tee -a "$out/summary.txt"
import json, sys
out, requests = sys.argv[1], int(sys.argv[2])
def lines(name):
    try:
        return [json.loads(l) for l in open(f"{out}/{name}-results.jsonl") if l.strip()]
    except (OSError, ValueError):
        return []
fail = lines("failover")
ids = [l.get("id") for l in fail]
errors = sum(1 for l in fail if "error" in l)
print(f"failover: {len(fail)} result lines for {requests} requests, {len(set(ids))} distinct ids, "
      f"{len(ids) - len(set(ids))} twice, {errors} errors")
try:
    st = json.load(open(f"{out}/failover-state.json"))
    print(f"failover: {st.get('redispatched')} requests re-dispatched; workers: "
          + ", ".join(f"{w.get('address')} up={w.get('up')}" for w in st.get("workers", [])))
except (OSError, ValueError):
    pass
PY
