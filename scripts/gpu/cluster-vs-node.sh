#!/usr/bin/env bash
# On the GPU machine, in one call: the cluster's overhead (issue 25, item 3). The same job runs
#   1. on a node alone (OPT-6.7B random weights, float16, GPU 40 GiB, CPU 100 GiB, the search's own geometry bounds, as
#      node-lib.sh starts one), and
#   2. on a gateway and one worker on this machine (the worker with the node's model, device, budgets and bounds; the
#      gateway with the model's config only), each its own `actorinfer node` process, members of one Akka.Cluster on
#      loopback. The GPU machine has no PostgreSQL server (no packages, no network), so the gateway keeps its journal on
#      SQLite in its data folder, as the node alone does: the one difference measured is the gateway->worker path.
# The job: REQUESTS (1,000) requests of PROMPT_LEN (512) random token ids and GEN_LEN (32) new tokens, greedy, through
# /v1/jobs; throughput is the tokens over the time from the POST to completion. Each side runs it REPS (2) times, the
# first on a fresh process; summary.txt under $OUT holds every run, both throughputs and the ratio (cluster / node) of
# the first runs and of the medians of the later ones, and whether both gave the same tokens.
# Usage, from the repository root with .gpu/ packed and carried:  bash scripts/gpu/cluster-vs-node.sh   (writes under $OUT)
# To check it on a CPU machine:  CLI=scripts/actorinfer DEVICE=cpu DTYPE=float32 GPU_MEM=0 CPU_MEM=4GiB MODEL=models/opt-tiny \
#   REQUESTS=200 PROMPT_LEN=24 GEN_LEN=16 BOUNDS=8x4 OUT=/tmp/out bash scripts/gpu/cluster-vs-node.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
model=${MODEL:-opt-6.7b}
device=${DEVICE:-cuda}
dtype=${DTYPE:-float16}
gpu_mem=${GPU_MEM:-40GiB}
cpu_mem=${CPU_MEM:-100GiB}
requests=${REQUESTS:-1000}
prompt_len=${PROMPT_LEN:-512}
gen_len=${GEN_LEN:-32}
reps=${REPS:-2}
limit=${LIMIT:-300}
bounds=${BOUNDS:-8192x8192}
read -r -a cli <<< "${CLI:-bash .gpu/run.sh actorinfer}"
key=sk-node
(nvidia-smi -L 2>/dev/null | head -1 || true) | tee "$out/card.txt"
[ -s "$out/card.txt" ] || echo "no GPU ($device)" > "$out/card.txt"
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; sleep 2; for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done' EXIT

python3 scripts/gpu/prompts.py "$work/job.jsonl" "$requests" "$prompt_len" "$gen_len" 2112 "$model"

# The model's part of every node's file: the node alone's and the worker's are the same but for their roles.
model_conf() {
  cat <<CONF
  model = "$model"
  device = "$device"
  dtype = "$dtype"
  memory { gpu-budget = "$gpu_mem", cpu-budget = "$cpu_mem" }
  scheduler { max-gpu-batch-size = ${bounds%x*}, max-gpu-batches = ${bounds#*x} }
  planner { max-block-size = 8192 }
CONF
}
# start NAME FILE [ARGS]: a node in the background, its log in $out/NAME.log.
start() {
  local name=$1 conf=$2; shift 2
  "${cli[@]}" node --config "$conf" --data-dir "$work/$name" "$@" > "$out/$name.log" 2>&1 &
  pids+=($!)
  echo $! > "$work/$name.pid"
}
stop() {
  local pid; pid=$(cat "$work/$1.pid")
  kill -TERM "$pid" 2>/dev/null; for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done; kill -KILL "$pid" 2>/dev/null
}
# ready PORT WORKERS: the gateway answers /readyz and counts WORKERS workers up (0: a node alone); at most 10 minutes.
ready() {
  local port=$1 want=$2 up
  for _ in $(seq 1 1200); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; then
      [ "$want" -eq 0 ] && return 0
      up=$(curl -sf -H "Authorization: Bearer $key" "http://127.0.0.1:$port/admin/state" | grep -o '"workers_up":[0-9]*' | cut -d: -f2)
      [ "${up:-0}" -ge "$want" ] && return 0
    fi
    sleep 0.5
  done
  echo "port $port did not serve (with $want workers) within 10 minutes" | tee -a "$out/summary.txt"
  return 1
}
# job PORT NAME: posts the job, waits for it (at most $limit s, and not past a CUDA error in a log), keeps its results,
# appends "NAME state seconds tokens" to $work/jobs.txt.
source scripts/gpu/node-lib.sh
job() { node_job "$1" "$work/job.jsonl" "$2" "$limit" "$key" "$work/jobs.txt"; }

# 1. The node alone.
{ echo "actorinfer {"; model_conf; echo "  persistence.provider = \"sqlite\""; echo "}"; } > "$work/node.conf"
start node "$work/node.conf" --host 127.0.0.1 --port 8201 --api-key "$key"
if ready 8201 0; then
  for r in $(seq 1 "$reps"); do job 8201 "node-$r"; done
  curl -s "http://127.0.0.1:8201/admin/state" -H "Authorization: Bearer $key" > "$out/node-state.json"
fi
stop node
# The worker takes the hardware profile the node measured (the same figures rank its policies).
mkdir -p "$work/worker"
cp "$work/node/hardware.json" "$work/worker/hardware.json" 2>/dev/null

# 2. A gateway (journal on SQLite) and one worker, members of one cluster on loopback.
cluster_conf() {
  printf '  cluster { enabled = on, hostname = "127.0.0.1", port = %s, seed-nodes = ["akka.tcp://actorinfer@127.0.0.1:4153"]' "$1"
  printf ', acceptable-heartbeat-pause = 10s, stable-after = 20s }\n'
}
{ echo "actorinfer {"; echo "  roles = [gateway]"; echo "  model = \"$model\""; echo "  device = \"cpu\""
  echo "  persistence.provider = \"sqlite\""; cluster_conf 4153; echo "}"; } > "$work/gateway.conf"
{ echo "actorinfer {"; echo "  roles = [worker]"; model_conf; echo "  http.enabled = off"; cluster_conf 4154; echo "}"; } > "$work/worker.conf"
start gateway "$work/gateway.conf" --host 127.0.0.1 --port 8202 --api-key "$key"
start worker "$work/worker.conf"
if ready 8202 1; then
  for r in $(seq 1 "$reps"); do job 8202 "cluster-$r"; done
  curl -s "http://127.0.0.1:8202/admin/state" -H "Authorization: Bearer $key" > "$out/cluster-state.json"
fi
stop worker
stop gateway
cp "$work"/*.conf "$out/" 2>/dev/null

python3 scripts/gpu/jobs-summary.py "$work/jobs.txt" "$out" "$reps" node node cluster "gateway + 1 worker" | tee -a "$out/summary.txt"
