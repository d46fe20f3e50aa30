#!/usr/bin/env bash
# On the GPU machine: several tenants on one GPU under a replayed Azure trace (issue 23, items 1 and 2). Each step starts a
# node, replays the first DURATION (10 min) of the conversation trace at SPEEDUP (6x: 100 s) against its "chat" model,
# and stops it:
#   alone:        OPT-6.7B alone on the GPU (the chat model, no arbiter): the TTFT reference;
#   ours:         a node of two models, "chat" = OPT-6.7B (priority 10) beside "batch" = OPT-30B (priority 0), the GPU
#                 arbiter dividing the device, conservative block sizing on (planner.headroom-history = HEADROOM, 4), the
#                 batch model's memory-floor BATCH_FLOOR (16 GiB: enough to stream OPT-30B's weights at about the speed it
#                 has alone under 16 GiB, so that it keeps running through every burst; the chat model alone never held
#                 half the rest); the batch model runs a BACKLOG (2,000) request job through /v1/jobs (prompt 512 random
#                 ids, 32 tokens, greedy) posted before the replay starts;
#   nopri:        the same with equal priorities (0 and 0): no priorities;
#   onequeue:     one queue without priorities (arbiter.one-queue = on, equal priorities): the models run one block at a
#                 time, in turns, so that a chat request waits for the batch model's block running when it arrives;
#   static:       the same with memory-floor = memory-ceiling per model: STATIC_SHARE (half) of the device for chat, the
#                 rest for batch;
#   flexgen:      the same with the batch model under a FlexGen-style static policy (static-share = on): its share fixed
#                 at what it has when its job comes (the device less the idle chat model's need), and its policy planned
#                 once for it; chat's bursts get only what is left beside it;
#   droponly:     ours without conservative sizing (headroom-history = 0: every block as large as its budget, falls drop
#                 what no longer fits), the same floor: item 2 compares ours against it.
# Every node: random weights, float16, the GPU budget the whole device less MARGIN_GIB (8 GiB), CPU_MEM (100 GiB) of CPU
# budget, the search's own geometry bounds; later nodes take the hardware profile the first one measured.
# The replay caps prompts at MAX_PROMPT (512) and outputs at MAX_OUTPUT (32) tokens: the shape at which OPT-6.7B's
# ~1,500 token/s was measured on the H200 (40 GiB). So capped, the conversation trace's first 10 minutes ask 150 token/s
# on average, 221 in their busiest 10 s and 269 in their busiest 5 s; at 6x that is 900 (60% of 1,500), 1,326 (88%) and
# 1,614 (past 100%, a queue builds) token/s: its bursts need more than half the GPU, while on average 40% is left to the
# batch model and a node alone drains its queue between bursts. summary.txt checks the memory side (the chat model's
# peak share and bytes held against the device). Measured on an H100 (docs/perf/h100-tenants-10x-start-weights/): alone,
# the chat model's peak held 0.43 of the budget at 8x and 0.66 at 10x, where it serves about what the trace asks (1,426
# token/s), so its bursts need more than half the budget only at 10x, and only with little compute to spare.
# summary.txt: per run the chat model's TTFT p50/p99 (p99 with failed requests counted at their time to failure where any
# failed), the batch model's throughput (the tokens it generated over the replay, from /admin/state; its job's completed
# requests beside them) and its longest time with work and
# no layer finished, the mean compute-tier memory held over the device and over the node's budget, each model's mean share
# beside the mean bytes it held (over the node's budget: the arbiter's division against the use), the out-of-memory
# count, requests lost or answered twice; then the acceptance's ratios. figures.json: the same per run, as data.
# runs.tar.gz: every run's replay output (summary.json, requests.jsonl, replay.png), node log and configuration, the job's
# progress and results. Files under $OUT: summary.txt, figures.json, runs.tar.gz, ours-replay.png.
# Usage, from the repository root with .gpu/ packed and carried and the trace copied to .gpu/traces/ (../shared does not
# travel):  bash scripts/gpu/tenants.sh   (writes under $OUT)
# The six steps take about 19 minutes on an H200 (estimated, not yet measured: alone ~150 s = a ~30 s node start, the
# 100 s replay, its drain and the stop; each two-model step ~200 s = a ~60 s start with OPT-30B's random weights, the
# batch job's first block, the replay, the job's cancel and the stop; nopri up to REQUEST_TIMEOUT (60 s) more), more than
# one 600 s call: split them over three calls,
#   STEPS="alone ours static" bash scripts/gpu/tenants.sh              (~550 s)
#   STEPS="nopri droponly" EARLIER=.gpu/earlier/figures.json bash scripts/gpu/tenants.sh   (~400 to 460 s)
#   STEPS="flexgen" EARLIER=".gpu/earlier/figures.json .gpu/earlier/figures-2.json" bash scripts/gpu/tenants.sh   (~200 s)
# with the earlier calls' figures.json copied to .gpu/earlier/ (or merge afterwards anywhere, no GPU needed:
#   STEPS= EARLIER="a/figures.json b/figures.json c/figures.json" OUT=/tmp/t bash scripts/gpu/tenants.sh). A step that would run past
# BUDGET_S (570 s from the start) is skipped and named, so that the summary is always written within one call.
# To check it on a CPU machine (host memory is then the divided tier):
#   CLI=scripts/actorinfer DEVICE=cpu DTYPE=float32 HIGH=models/opt-tiny LOW=models/opt-tiny GPU_MEM=0 CPU_MEM=5MiB BATCH_FLOOR=1MiB \
#   BACKLOG=4000 PROMPT_LEN=24 GEN_LEN=8 MAX_PROMPT=32 MAX_OUTPUT=8 SPEEDUP=20 DURATION=60s BOUNDS=8x4 MAX_BLOCK=32 \
#   TRACE=tests/fixtures/traces/azure-conv-1min.csv OUT=/tmp/t bash scripts/gpu/tenants.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
high=${HIGH:-opt-6.7b}
low=${LOW:-opt-30b}
device=${DEVICE:-cuda}
dtype=${DTYPE:-float16}
speedup=${SPEEDUP:-6}
duration=${DURATION:-10m}
max_prompt=${MAX_PROMPT:-512}
max_output=${MAX_OUTPUT:-32}
backlog=${BACKLOG:-2000}
prompt_len=${PROMPT_LEN:-512}
gen_len=${GEN_LEN:-32}
cpu_mem=${CPU_MEM:-100GiB}
static_share=${STATIC_SHARE:-0.5}
headroom=${HEADROOM:-4}
batch_floor=${BATCH_FLOOR:-16GiB}
request_timeout=${REQUEST_TIMEOUT:-60s}
bounds=${BOUNDS:-8192x8192}
# WEIGHT_PLACEMENT: every node's planner.weight-placement (flexgen, the default, or spread: a model's weights raised into
# what the others leave fill it by whole percents instead of whole tensor kinds).
weight_placement=${WEIGHT_PLACEMENT:-flexgen}
max_block=${MAX_BLOCK:-8192}
budget_s=${BUDGET_S:-570}
# LOW_NICE, LOW_THREADS: the lower-priority model's host share (arbiter.lower-priority-nice, -threads); unset: the defaults.
low_host="${LOW_NICE:+, lower-priority-nice = $LOW_NICE}${LOW_THREADS:+, lower-priority-threads = $LOW_THREADS}"
# NODE_SETTINGS (e.g. "cuda-graphs = on"): lines added to every node's configuration, inside `actorinfer { }`; PROFILE: a
# hardware profile (a node's hardware.json) every node takes instead of measuring one (a second call of the script on the
# same machine then ranks policies by the same figures as the first).
node_settings=${NODE_SETTINGS:-}
steps=${STEPS-alone ours static nopri onequeue droponly flexgen}
read -r -a cli <<< "${CLI:-bash .gpu/run.sh actorinfer}"
key=sk-node
started=$(date +%s)
has() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
trace=${TRACE:-}
for f in .gpu/traces/AzureLLMInferenceTrace_conv.csv shared/traces/AzureLLMInferenceTrace_conv.csv ../shared/traces/AzureLLMInferenceTrace_conv.csv; do
  [ -n "$trace" ] && break; [ -f "$f" ] && trace=$f
done
(nvidia-smi -L 2>/dev/null | head -1 || true) > "$out/card.txt"
[ -s "$out/card.txt" ] || echo "no GPU ($device)" > "$out/card.txt"
# The device's memory (MiB; 0 without a GPU) and the node's GPU budget: the whole device less the margin.
device_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
device_mib=${device_mib:-0}
gpu_mem=${GPU_MEM:-$(( device_mib - ${MARGIN_GIB:-8} * 1024 ))MiB}
# The tier the arbiter divides: the GPU, or host memory on a CPU node.
if [ "$device" = cpu ]; then divided=$cpu_mem; else divided=$gpu_mem; fi
divided_bytes=$(python3 -c "
import re, sys
m = re.fullmatch(r'([\d.]+)\s*([KMGT]i?B)?', sys.argv[1].strip())
print(int(float(m.group(1)) * {None: 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30, 'TiB': 1 << 40}[m.group(2)]))" "$divided")
static_high=$(python3 -c "print(int($divided_bytes * $static_share))")
static_low=$(( divided_bytes - static_high ))
work=$(mktemp -d)
[ -n "${PROFILE:-}" ] && cp "$PROFILE" "$work/profile.json"
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; sleep 2; for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
trap 'exit 143' TERM INT
{
  cat "$out/card.txt"
  echo "trace ${trace:-(none found)}: first $duration at ${speedup}x, prompts <= $max_prompt, outputs <= $max_output tokens; chat $high, batch $low"
  echo "budgets: GPU $gpu_mem (device ${device_mib} MiB), CPU $cpu_mem; divided ($device): $divided_bytes bytes; static split $static_high / $static_low"
  echo "batch job: $backlog requests, prompt $prompt_len, $gen_len tokens; steps: ${steps:-none}; weight placement $weight_placement"
} | tee "$out/setup.txt"

python3 - "$work/job.jsonl" "$backlog" "$prompt_len" "$gen_len" "$low" <<'PY'
import json, os, random, sys
path, n, prompt_len, gen_len, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"] if os.path.isdir(model) else 50000
rng = random.Random(2112)
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": f"b{i}", "prompt": [2] + [rng.randrange(10, vocab) for _ in range(prompt_len - 1)],
                            "max_tokens": gen_len, "temperature": 0, "ignore_eos": True}) + "\n")
PY

source scripts/gpu/node-lib.sh
# On the GPU machine every program a step left running is killed before the next one starts (never on a shared CPU machine:
# node_reap kills by the bundle's path).
reap() { [ "$device" = cpu ] || node_reap; }
auth=(-H "Authorization: Bearer $key")
key_hash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
# The parts of every node's file: device, budgets, bounds, planner, and one tenant (the admin's key) whose queue holds a
# 2,000-line job and the trace's bursts (--api-key's tenant would take the reference's 1,024).
common_conf() { # NAME HEADROOM [ARBITER-EXTRA]
  cat <<CONF
  device = "$device"
  dtype = "$dtype"
  data-dir = "$work/$1/data"
  memory { gpu-budget = "$gpu_mem", cpu-budget = "$cpu_mem" }
  scheduler { max-gpu-batch-size = ${bounds%x*}, max-gpu-batches = ${bounds#*x} }
  planner { max-block-size = $max_block, headroom-history = $2, weight-placement = "$weight_placement" }
  arbiter { poll-interval = 100ms${3:-}${low_host} }
  $node_settings
  http {
    admin-key-hashes = ["$key_hash"]
    tenants { bench { api-key-hashes = ["$key_hash"], max-queued-requests = 100000 } }
  }
CONF
}
# two_conf NAME CHAT-PRIORITY BATCH-PRIORITY HEADROOM [static|flexgen|floor|onequeue]: chat and batch on one device; static: floor =
# ceiling per model; flexgen: the batch model's share fixed once it has work (static-share); floor: the batch model's
# memory-floor is BATCH_FLOOR; onequeue: one queue without priorities (arbiter.one-queue = on).
two_conf() {
  local chat_bounds="" batch_bounds="" extra=""
  if [ "${5:-}" = static ]; then
    chat_bounds=", memory-floor = $static_high, memory-ceiling = $static_high"
    batch_bounds=", memory-floor = $static_low, memory-ceiling = $static_low"
  elif [ "${5:-}" = flexgen ]; then
    batch_bounds=", static-share = on"
  elif [ "${5:-}" = onequeue ]; then
    extra=", one-queue = on"
  elif [ "${5:-}" = floor ]; then
    batch_bounds=", memory-floor = \"$batch_floor\""
  fi
  { echo "actorinfer {"
    echo "  models = ["
    echo "    { name = \"chat\", model = \"$high\", priority = $2$chat_bounds },"
    echo "    { name = \"batch\", model = \"$low\", priority = $3, weights-seed = 1$batch_bounds },"
    echo "  ]"
    common_conf "$1" "$4" "$extra"
    echo "}"; } > "$work/$1/node.conf"
}
alone_conf() { # NAME: the chat model alone (no arbiter), served under the same name.
  { echo "actorinfer {"; echo "  model = \"$high\""; common_conf "$1" 0 | grep -v '^  arbiter'
    echo "  http.served-model-name = \"chat\""; echo "}"; } > "$work/$1/node.conf"
}
# start NAME PORT T0: the node of $work/NAME/node.conf in the background (log: $work/NAME/node.log), with the profile the
# first node measured; returns once it serves (at most NODE_LIMIT s).
start() {
  local name=$1 port=$2
  mkdir -p "$work/$name/data"
  cp "$work/profile.json" "$work/$name/data/hardware.json" 2>/dev/null
  "${cli[@]}" node --config "$work/$name/node.conf" --host 127.0.0.1 --port "$port" > "$work/$name/node.log" 2>&1 &
  pids+=($!); echo $! > "$work/$name.pid"
  for _ in $(seq 1 $(( ${NODE_LIMIT:-300} * 2 ))); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; then
      [ -f "$work/profile.json" ] || cp "$work/$name/data/hardware.json" "$work/profile.json" 2>/dev/null
      echo "$name: serving after $(( $(date +%s) - $3 )) s"; return 0
    fi
    kill -0 "$(cat "$work/$name.pid")" 2>/dev/null || break
    sleep 0.5
  done
  echo "$name: the node did not serve (see its log in runs.tar.gz)" | tee -a "$out/setup.txt"
  return 1
}
stop() { node_stop "$1" 2>/dev/null; reap; }
# state PORT EXPR: a Python expression over /admin/state's JSON (s).
state() { curl -s "http://127.0.0.1:$1/admin/state" "${auth[@]}" | python3 -c "import json,sys; s=json.load(sys.stdin); print($2)" 2>/dev/null; }
# poll PORT ID FILE: "epoch-seconds completed tokens" every half second, until killed: the job's completed requests and
# the tokens the batch model has generated so far (a block's tokens count as they are chosen, before it finishes).
poll() {
  while :; do
    c=$(curl -s "http://127.0.0.1:$1/v1/jobs/$2" "${auth[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["completed"])' 2>/dev/null)
    t=$(state "$1" "[m['queue'].get('tokens_generated', -1) for m in s['models'] if m['name'] == 'batch'][0]")
    [ -n "$c" ] && echo "$(date +%s.%N) $c ${t:--1}" >> "$3"
    sleep 0.5
  done
}
left() { echo $(( budget_s - ($(date +%s) - started) )); }
# replay NAME PORT: the trace against chat; bounded by the time left in the call.
replay() {
  local limit; limit=$(( $(left) - 15 ))
  [ "$limit" -gt 30 ] || limit=30
  echo "$(date +%s.%N)" > "$work/$1/replay-start.txt"
  # The device's own figure of its used memory (MiB) every 250 ms while the replay runs: what the node holds as the device
  # reports it (the tiers' tensors, the caching allocator's reserve beyond them and the CUDA context), beside the tiers' bytes.
  node_sample_memory "$work/$1/device-memory.txt"
  timeout -k 10 "$limit" "${cli[@]}" replay --url "http://127.0.0.1:$2" --api-key "$key" --trace "$trace" --model chat \
    --speedup "$speedup" --duration "$duration" --max-prompt-tokens "$max_prompt" --max-output-tokens "$max_output" \
    --request-timeout "$request_timeout" --sample-every 250ms --output "$work/$1/replay" > "$work/$1/replay.log" 2>&1
  echo "replay rc $?" >> "$work/$1/replay.log"
  node_stop_sampling
  echo "$(date +%s.%N)" > "$work/$1/replay-end.txt"
  grep '^replay: ' "$work/$1/replay.log" | sed "s/^/$1 /"
}
# Node-wide figures after the replay: metrics, state, and the results the node wrote (one file per completion).
collect() {
  curl -s "http://127.0.0.1:$2/metrics" "${auth[@]}" > "$work/$1/metrics.txt"
  curl -s "http://127.0.0.1:$2/admin/state" "${auth[@]}" > "$work/$1/state.json"
}
# A port nobody listens on now (the machine may be shared: a fixed one could be another's node).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# run_alone NAME / run_two NAME CHAT-PRIORITY BATCH-PRIORITY HEADROOM [static|flexgen]
run_alone() {
  local t0 port; t0=$(date +%s); port=$(free_port); mkdir -p "$work/$1"; alone_conf "$1"
  start "$1" "$port" "$t0" && { replay "$1" "$port"; collect "$1" "$port"; }
  stop "$1"
}
run_two() {
  local name=$1 port t0 id; t0=$(date +%s); port=$(free_port); mkdir -p "$work/$name"; shift
  two_conf "$name" "$1" "$2" "$3" "${4:-}"
  if start "$name" "$port" "$t0"; then
    curl -s "http://127.0.0.1:$port/v1/jobs?model=batch" "${auth[@]}" --data-binary @"$work/job.jsonl" > "$work/$name/job-post.json"
    id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' < "$work/$name/job-post.json" 2>/dev/null)
    [ -n "$id" ] || echo "$name: the batch job was refused: $(head -c 300 "$work/$name/job-post.json")" | tee -a "$out/setup.txt"
    # The replay starts once the batch model runs its first block (at most WARM_LIMIT s).
    local until=$(( $(date +%s) + ${WARM_LIMIT:-90} ))
    while [ "$(date +%s)" -lt "$until" ]; do
      [ "$(state "$port" "any(m['name'] == 'batch' and (m['queue']['running_block'] is not None or m['queue']['layers_done'] > 0) for m in s['models'])")" = True ] && break
      sleep 0.5
    done
    echo "$name: batch job $id running after $(( $(date +%s) - t0 )) s"
    poll "$port" "$id" "$work/$name/job-progress.txt" & local poller=$!; pids+=($poller)
    replay "$name" "$port"
    kill "$poller" 2>/dev/null
    collect "$name" "$port"
    # The job is still running (results are served once every request has finished): its counts, then cancelled, its
    # results (a line per request: the finished ones' tokens, the others cancelled).
    curl -s "http://127.0.0.1:$port/v1/jobs/$id" "${auth[@]}" > "$work/$name/job-status.json"
    curl -s -X DELETE "http://127.0.0.1:$port/v1/jobs/$id" "${auth[@]}" > /dev/null
    for _ in $(seq 1 60); do
      curl -sf "http://127.0.0.1:$port/v1/jobs/$id/results" "${auth[@]}" > "$work/$name/job-results.jsonl" && break
      sleep 0.5
    done
  fi
  stop "$name"
}
# step NAME SECONDS CMD...: runs CMD unless its estimate would run past the call's budget.
step() {
  local name=$1 need=$2; shift 2
  has "$name" || return 0
  if [ "$(left)" -lt "$need" ]; then echo "$name: skipped, $(left) s left of BUDGET_S and the step needs about $need s" | tee -a "$out/setup.txt"; return 0; fi
  "$@"
}
if [ -n "$steps" ] && [ -z "$trace" ]; then echo "no trace: copy AzureLLMInferenceTrace_conv.csv into .gpu/traces/ or set TRACE" | tee -a "$out/setup.txt"; steps=""; fi
step alone 150 run_alone alone
step ours 200 run_two ours 10 0 "$headroom" floor
step static 200 run_two static 10 0 0 static
step nopri 230 run_two nopri 0 0 0
step onequeue 230 run_two onequeue 0 0 0 onequeue
step droponly 200 run_two droponly 10 0 0 floor
step flexgen 200 run_two flexgen 10 0 0 flexgen

# figures.json: this call's runs, with EARLIER's (figures.json of earlier calls) beneath them.
python3 - "$work" "$out" "$device_mib" "$gen_len" ${EARLIER:-} <<'PY'
import glob, json, math, os, sys
work, out, device_mib, gen_len, earlier = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
figures = {}
for path in earlier:
    figures.update(json.load(open(path)))
def nearest(values, p):
    values = sorted(values)
    return values[max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))] if values else None
for run in ("alone", "ours", "static", "nopri", "onequeue", "droponly", "flexgen"):
    d = f"{work}/{run}"
    if not os.path.isdir(d): continue
    # The card and settings each run had (an earlier call's runs keep theirs).
    f = {"ran": True, "setup": open(f"{out}/setup.txt").read().splitlines()[:3]}
    try:
        s = json.load(open(f"{d}/replay/summary.json"))
    except (OSError, ValueError):
        f["error"] = "no replay summary (see replay.log and node.log in runs.tar.gz)"
        figures[run] = f
        continue
    chat, r = s["tenants"]["chat"], s["run"]
    f.update({k: chat.get(k) for k in ("requests", "completed", "failed", "ttft_p50", "ttft_p99", "tpot_p50", "e2e_p99", "tokens", "throughput", "first_error")})
    f["seconds"] = s["seconds"]
    # A failed request counts at its time to failure (a lower bound of its TTFT): a baseline that times out is not flattered.
    reqs = [json.loads(l) for l in open(f"{d}/replay/requests.jsonl") if l.strip()]
    f["ttft_p99_with_failed"] = nearest([q["ttft"] if q["completed"] else q["e2e"] for q in reqs], 99)
    for k in ("drops", "requeues", "recomputed_tokens", "out_of_memory", "memory_held_mean_bytes", "device_budget_mean_bytes"):
        f[k] = r.get(k)
    f["chat_drops"] = chat.get("drops")
    held = f["memory_held_mean_bytes"] or 0
    f["held_over_device"] = held / (device_mib << 20) if device_mib else None
    f["held_over_budget"] = held / f["device_budget_mean_bytes"] if f["device_budget_mean_bytes"] else None
    # The same held as the device reports it (nvidia-smi's used memory over the replay): it counts the allocator's reserve
    # beyond the tensors and the CUDA context, so it is at least the tiers' figure; both are reported, neither replaces the other.
    try:
        used = [int(l) for l in open(f"{d}/device-memory.txt") if l.strip().isdigit()]
    except OSError:
        used = []
    f["device_used_mean_over_device"] = sum(used) / len(used) / device_mib if used and device_mib else None
    f["device_used_peak_mib"] = max(used) if used else None
    # How much of the device the chat model's bursts took: its peak share and bytes held against the node's budget.
    mem = r.get("memory", [])
    budgets = [m["device_budget"] for m in mem if m.get("device_budget")]
    node_budget = max(budgets) if budgets else None
    chat_held = [m["models"]["chat"]["held"] for m in mem if "chat" in m["models"]]
    chat_share = [m["models"]["chat"]["budget"] for m in mem if "chat" in m["models"]]
    f["chat_peak_held_over_budget"] = max(chat_held) / node_budget if chat_held and node_budget else None
    f["chat_peak_share_over_budget"] = max(chat_share) / node_budget if chat_share and node_budget and run != "alone" else None
    # Each model's mean share beside the mean bytes its tiers held, over the node's budget: a share well above what a model
    # holds is memory the arbiter keeps from the others (the higher priority's claim for its queue and arrivals).
    for name in ("chat", "batch"):
        shares = [m["models"][name]["budget"] for m in mem if name in m["models"] and m["models"][name].get("budget")]
        helds = [m["models"][name]["held"] for m in mem if name in m["models"]]
        f[f"{name}_mean_share_over_budget"] = sum(shares) / len(shares) / node_budget if shares and node_budget and run != "alone" else None
        f[f"{name}_mean_held_over_budget"] = sum(helds) / len(helds) / node_budget if helds and node_budget else None
    f["progress"] = r.get("progress")
    oom = 0
    # A model that found no policy under a budget it was given (not the zero budgets before the arbiter's first division)
    # serves nothing: a run whose batch model never found one is no baseline, and the summary says so.
    no_policy = 0
    for log in glob.glob(f"{d}/node.log"):
        lines = open(log, errors="replace").readlines()
        oom = sum(1 for l in lines if "out of memory" in l.lower())
        # The divided tier's budget is the GPU's on a GPU node, host memory's on a CPU one.
        zero = "(gpu 0B," if device_mib else ", cpu 0B,"
        no_policy = sum(1 for l in lines if "model-1-planner" in l and "no policy fits the budgets (gpu " in l and zero not in l)
    f["oom_log_lines"] = oom
    f["batch_no_policy_lines"] = no_policy
    # Completions answered twice: a result file of the node with more than one line.
    results = glob.glob(f"{d}/data/results/cmpl-*.jsonl")
    f["completion_results"] = len(results)
    f["completion_results_twice"] = sum(1 for p in results if sum(1 for l in open(p) if l.strip()) > 1)
    # The batch model's job: its throughput over the replay (completed requests' tokens), and lost or duplicated results.
    if os.path.exists(f"{d}/job-progress.txt"):
        start = float(open(f"{d}/replay-start.txt").read()); end = float(open(f"{d}/replay-end.txt").read())
        table = [tuple(map(float, l.split())) for l in open(f"{d}/job-progress.txt") if l.strip()]
        rows = [(r[0], r[1]) for r in table]
        def done_at(t, series):
            before = [c for at, c in series if at <= t]
            return before[-1] if before else (series[0][1] if series else 0)
        inside = [(at, c) for at, c in rows if start <= at <= end]
        f["batch_completed_in_replay"] = done_at(end, rows) - done_at(start, rows)
        f["batch_completed_throughput"] = f["batch_completed_in_replay"] * gen_len / (end - start)
        # The tokens the batch model generated over the replay, finished blocks or not: its throughput. (Completed
        # requests alone say nothing where a block of the offloaded model outlasts the replay.)
        tokens = [(r[0], r[2]) for r in table if len(r) > 2 and r[2] >= 0]
        f["batch_tokens_in_replay"] = done_at(end, tokens) - done_at(start, tokens) if tokens else None
        f["batch_throughput"] = (f["batch_tokens_in_replay"] / (end - start) if tokens else f["batch_completed_throughput"])
        # Between the first and the last completion seen inside the replay: no partial block at either end.
        moves = [(at, c) for (at, c), (_, p) in zip(inside[1:], inside) if c > p]
        f["batch_throughput_between_blocks"] = ((moves[-1][1] - moves[0][1]) * gen_len / (moves[-1][0] - moves[0][0])
                                                if len(moves) > 1 and moves[-1][0] > moves[0][0] else None)
        lines = [json.loads(l) for l in open(f"{d}/job-results.jsonl") if l.strip()] if os.path.exists(f"{d}/job-results.jsonl") else []
        ids = [l.get("id") for l in lines]
        f["batch_results"] = len(lines)
        f["batch_duplicated"] = len(ids) - len(set(ids))
        cancelled = [l for l in lines if "error" in l and "cancel" in json.dumps(l["error"]).lower()]
        f["batch_cancelled"] = len(cancelled)
        f["batch_errors"] = sum(1 for l in lines if "error" in l) - len(cancelled)
        f["batch_short"] = sum(1 for l in lines if "error" not in l and len(l.get("output_ids") or []) != gen_len)
        # Lost: requests without a line (every one has one once the job is cancelled), or fewer finished lines than the
        # job had counted finished before the cancel.
        try:
            counts = json.load(open(f"{d}/job-status.json"))["counts"]
            finished = sum(1 for l in lines if "error" not in l)
            f["batch_lost"] = (counts["total"] - len(set(ids))) + max(0, counts["completed"] - finished) if lines else None
        except (OSError, ValueError, KeyError):
            f["batch_lost"] = None
        p = (r.get("progress") or {}).get("batch") or {}
        f["batch_longest_without_progress"] = p.get("longest_without_progress_seconds")
        f["total_throughput"] = (f["throughput"] or 0) + f["batch_throughput"]
    figures[run] = f
json.dump(figures, open(f"{out}/figures.json", "w"), indent=1)
PY

python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, sys
out = sys.argv[1]
print(open(f"{out}/setup.txt").read().rstrip())
figures = json.load(open(f"{out}/figures.json"))
def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)
for run in ("alone", "ours", "static", "nopri", "onequeue", "droponly", "flexgen"):
    f = figures.get(run)
    if not f: print(f"{run}: not run"); continue
    if "error" in f: print(f"{run}: {f['error']}"); continue
    if f.get("setup") and f["setup"] != open(f"{out}/setup.txt").read().splitlines()[:3]:
        print(f"{run} (an earlier call): " + "; ".join(f["setup"]))
    line = (f"{run}: chat {f['completed']}/{f['requests']} completed ({f['failed']} failed), ttft p50 {fmt(f['ttft_p50'])} p99 {fmt(f['ttft_p99'])} s"
            + (f" (p99 {fmt(f['ttft_p99_with_failed'])} s counting the failed at their failure)" if f["failed"] else "")
            + f", {fmt(f['throughput'], '.1f')} token/s")
    if "batch_throughput" in f:
        line += (f"; batch {fmt(f['batch_throughput'], '.1f')} token/s generated in the replay ({fmt(f.get('batch_tokens_in_replay'), '.0f')} tokens; "
                 f"{f['batch_completed_in_replay']:.0f} requests completed in it, {fmt(f.get('batch_completed_throughput'), '.1f')} token/s; "
                 f"{fmt(f['batch_throughput_between_blocks'], '.1f')} between its first and last completion there), "
                 f"longest with work and no progress {fmt(f['batch_longest_without_progress'], '.1f')} s")
    print(line)
    if "batch_throughput" in f and not f.get("batch_tokens_in_replay") and f.get("batch_no_policy_lines"):
        print(f"  NOT A BASELINE: the batch model generated nothing in the replay and its planner logged {f['batch_no_policy_lines']} "
              "'no policy fits' under nonzero budgets (node.log)")
    print(f"  memory held / device {fmt(f['held_over_device'], '.3f')}, / node budget {fmt(f['held_over_budget'], '.3f')}; chat peak held / budget "
          f"{fmt(f['chat_peak_held_over_budget'], '.3f')} (mean {fmt(f.get('chat_mean_held_over_budget'), '.3f')}), peak share / budget "
          f"{fmt(f['chat_peak_share_over_budget'], '.3f')}; as the device reports it: used / device {fmt(f.get('device_used_mean_over_device'), '.3f')} "
          f"(peak {fmt(f.get('device_used_peak_mib'), '.0f')} MiB)")
    if f.get("chat_mean_share_over_budget") is not None:
        print(f"  mean share / held over the node budget: chat {fmt(f['chat_mean_share_over_budget'], '.3f')} / {fmt(f.get('chat_mean_held_over_budget'), '.3f')}, "
              f"batch {fmt(f.get('batch_mean_share_over_budget'), '.3f')} / {fmt(f.get('batch_mean_held_over_budget'), '.3f')}")
    print(f"  drops {fmt(f['drops'], '.0f')} (chat {f['chat_drops']}), requeues {fmt(f['requeues'], '.0f')}, recomputed tokens {fmt(f['recomputed_tokens'], '.0f')}, "
          f"out of memory {fmt(f['out_of_memory'], '.0f')} (log lines {f['oom_log_lines']}); completions answered twice {f['completion_results_twice']} "
          f"of {f['completion_results']}" + (f"; batch results {f['batch_results']}, duplicated {f['batch_duplicated']}, errors {f['batch_errors']}, "
          f"short {f['batch_short']}, lost {f['batch_lost']} (cancelled at the end {f['batch_cancelled']})" if "batch_results" in f else ""))
def get(run, key):
    f = figures.get(run) or {}
    return f.get(key)
def ratio(a, b):
    return a / b if a is not None and b else None
def verdict(value, test):
    return "-" if value is None else ("yes" if test(value) else "NO")
print("acceptance (item 1: ours against the baselines; item 2: ours, conservative, against drop-only):")
r = ratio(get("ours", "ttft_p99_with_failed"), get("alone", "ttft_p99_with_failed"))
print(f"  chat ttft p99 ours / alone {fmt(r, '.2f')} (<= 1.5: {verdict(r, lambda v: v <= 1.5)})")
r = ratio(get("nopri", "ttft_p99_with_failed"), get("ours", "ttft_p99_with_failed"))
print(f"  chat ttft p99 no-priority / ours {fmt(r, '.2f')} (>= 3: {verdict(r, lambda v: v >= 3)})")
r = ratio(get("onequeue", "ttft_p99_with_failed"), get("ours", "ttft_p99_with_failed"))
print(f"  chat ttft p99 one queue without priorities / ours {fmt(r, '.2f')} (>= 3: {verdict(r, lambda v: v >= 3)})")
static_ran = bool(get("static", "batch_tokens_in_replay")) or not get("static", "batch_no_policy_lines")
r = ratio(get("ours", "batch_throughput"), get("static", "batch_throughput")) if static_ran else None
r2 = ratio(get("ours", "batch_throughput_between_blocks"), get("static", "batch_throughput_between_blocks")) if static_ran else None
if not static_ran:
    print("  the static split's batch model found no policy and served nothing: batch ours / static is not measured")
print(f"  batch throughput ours / static split {fmt(r, '.2f')} (between blocks {fmt(r2, '.2f')}) (>= 1.3: {verdict(r, lambda v: v >= 1.3)})")
r = ratio(get("flexgen", "ttft_p99_with_failed"), get("ours", "ttft_p99_with_failed"))
r2 = ratio(get("ours", "batch_throughput"), get("flexgen", "batch_throughput"))
print(f"  against the batch model under a FlexGen-style static policy: chat ttft p99 flexgen / ours {fmt(r, '.2f')}, "
      f"batch throughput ours / flexgen {fmt(r2, '.2f')}")
w = get("ours", "batch_longest_without_progress")
print(f"  batch longest with work and no progress, ours: {fmt(w, '.1f')} s (< 10 s: {verdict(w, lambda v: v < 10)})")
h = get("ours", "held_over_device")
d = get("ours", "device_used_mean_over_device")
hb = get("ours", "held_over_budget")
# Each model's share keeps a tenth for the caching allocator's reserve (DeviceReserve), which the tiers never hold: their
# tensors reach at most 0.9 of the node's budget, itself the device less MARGIN_GIB.
bound = 0.9 * h / hb if h is not None and hb else None
print(f"  memory held / device, ours, as the device reports it: {fmt(d, '.3f')} (>= 0.85: {verdict(d, lambda v: v >= 0.85)}; static "
      f"{fmt(get('static', 'device_used_mean_over_device'), '.3f')}); the tiers' tensors alone: {fmt(h, '.3f')} (>= 0.85: "
      f"{verdict(h, lambda v: v >= 0.85)}; at most {fmt(bound, '.3f')} by construction: each share keeps a tenth for the allocator's reserve)")
p = get("alone", "chat_peak_held_over_budget")
print(f"  chat alone, peak held / device budget: {fmt(p, '.3f')} (bursts need more than half: {verdict(p, lambda v: v > 0.5)})")
bad = {run: (f.get("out_of_memory") or 0) + f.get("oom_log_lines", 0) + (f.get("failed") or 0) + f.get("completion_results_twice", 0)
            + f.get("batch_duplicated", 0) + f.get("batch_errors", 0) + f.get("batch_short", 0) + (f.get("batch_lost") or 0)
       for run, f in figures.items() if "error" not in f}
print(f"  out-of-memory, failed, lost or twice-answered, per run: {bad}")
for key, label in (("drops", "drops"), ("recomputed_tokens", "recomputed tokens")):
    r = ratio(get("ours", key), get("droponly", key))
    print(f"  {label} conservative / drop-only {fmt(r, '.2f')} ({fmt(get('ours', key), '.0f')} / {fmt(get('droponly', key), '.0f')}; <= 0.5: {verdict(r, lambda v: v <= 0.5)})")
r = ratio(get("ours", "total_throughput"), get("droponly", "total_throughput"))
print(f"  total throughput conservative / drop-only {fmt(r, '.3f')} (>= 0.95: {verdict(r, lambda v: v >= 0.95)})")
PY
cp "$work/ours/replay/replay.png" "$out/ours-replay.png" 2>/dev/null
# Everything else in one file (what comes back from a call is a few files): each run's replay output, node log and configuration.
cp "$work/profile.json" "$out/profile.json" 2>/dev/null
tar -C "$work" -czf "$out/runs.tar.gz" --exclude='data' --exclude='job.jsonl' . 2>/dev/null
rm -f "$out/card.txt" "$out/setup.txt"
