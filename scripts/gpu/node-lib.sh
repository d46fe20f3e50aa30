# Sourced by the GPU scripts that run nodes: needs $work (a scratch folder) and $out (what comes back).
# node_start NAME PORT MODEL GPU CPU EXTRA: a CUDA node (float16, the search's own geometry bounds) in the background, its
# log in $out/NAME.log, its data in $work/NAME, EXTRA appended to its planner section; returns once it serves.
# $NODE_ENV (e.g. CUDA_LAUNCH_BLOCKING=1) is its extra environment; $NODE_SETTINGS (e.g. "batch-invariant = on") goes into
# its actorinfer section.
node_start() {
  local name=$1 port=$2 model=$3 gpu=$4 cpu=$5 extra=$6
  mkdir -p "$work/$name"
  cat > "$work/$name.conf" <<CONF
actorinfer {
  model = "$model"
  device = "cuda"
  dtype = "float16"
  data-dir = "$work/$name"
  memory { gpu-budget = "$gpu", cpu-budget = "$cpu" }
  # The geometry bounds of bench --policy auto: only the search's own block bound.
  scheduler { max-gpu-batch-size = 8192, max-gpu-batches = 8192 }
  planner { max-block-size = 8192 $extra }
  # Jobs of thousands of requests in one POST (the default tenant may queue 1,024).
  http.tenant-defaults.max-queued-requests = 100000
  ${NODE_SETTINGS:-}
}
CONF
  env ${NODE_ENV:-} bash .gpu/run.sh actorinfer node --config "$work/$name.conf" --port "$port" --api-key sk-node > "$out/$name.log" 2>&1 &
  echo $! > "$work/$name.pid"
  for _ in $(seq 1 480); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.5; done
  echo "node $name did not become ready" | tee -a "$out/summary.txt"
  return 1
}
# node_stop NAME: SIGTERM, then SIGKILL after 30 s.
node_stop() {
  local pid; pid=$(cat "$work/$1.pid")
  kill -TERM "$pid"; for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done; kill -KILL "$pid"
}
# node_reap: kills whatever a step left running from the bundle (a program past its limit may still be computing).
node_reap() {
  pkill -TERM -f "${GPU_APP_DIR:-/tmp/gpu-app}/actorinfer" 2>/dev/null || return 0
  for _ in $(seq 1 20); do pgrep -f "${GPU_APP_DIR:-/tmp/gpu-app}/actorinfer" >/dev/null || return 0; sleep 0.5; done
  pkill -KILL -f "${GPU_APP_DIR:-/tmp/gpu-app}/actorinfer"; sleep 1
}
# node_job PORT FILE NAME LIMIT KEY JOBS: posts FILE as a job, waits for it (at most LIMIT seconds, and not past a CUDA
# error in a log under $out), keeps its results in $out/NAME-results.jsonl, appends "NAME state seconds tokens" to JOBS.
node_job() {
  local port=$1 file=$2 name=$3 limit=$4 key=$5 jobs=$6 start id state seconds tokens
  local auth=(-H "Authorization: Bearer $key")
  start=$(date +%s.%N)
  id=$(curl -s "http://127.0.0.1:$port/v1/jobs" "${auth[@]}" --data-binary @"$file" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  while :; do
    state=$(curl -s "http://127.0.0.1:$port/v1/jobs/$id" "${auth[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [ "$state" = completed ] || [ "$state" = failed ] && break
    if grep -q "CUDA error" "$out"/*.log 2>/dev/null || python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $start > $limit else 1)"; then
      state="stopped-$state"; break
    fi
    sleep 0.1
  done
  seconds=$(python3 -c "print($(date +%s.%N) - $start)")
  curl -s "http://127.0.0.1:$port/v1/jobs/$id/results" "${auth[@]}" > "$out/$name-results.jsonl"
  tokens=$(python3 -c "
import json
print(sum(len(json.loads(l).get('output_ids', [])) for l in open('$out/$name-results.jsonl') if l.strip()))")
  echo "$name $state $seconds $tokens" | tee -a "$jobs"
}

# node_sample_memory FILE: the device's used memory (MiB) every 250 ms into FILE, in the background, where nvidia-smi is
# (nothing elsewhere); node_stop_sampling ends it.
node_sample_memory() {
  NODE_SAMPLER=""
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$1" 2>/dev/null &
  NODE_SAMPLER=$!
}
node_stop_sampling() { [ -n "${NODE_SAMPLER:-}" ] && kill "$NODE_SAMPLER" 2>/dev/null; NODE_SAMPLER=""; }
