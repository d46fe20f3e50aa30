#!/usr/bin/env bash
# On the GPU machine: the elastic-memory demonstration with OPT-6.7B (random weights, float16, prompt 512, 32 tokens).
#   1. one job under a GPU budget stepping 40 -> 12 -> 24 -> 40 GiB at 20, 32 and 42 s (generate --pressure, timeline in run-elastic/);
#   2. the same work under each phase's budget held from the start: a static policy planned for that budget;
#   3. a second job with nine budget changes 5 s apart, for more samples of the time to honour each (a decoding-heavy
#      workload, prompt 128 and 128 tokens, so that changes land during decoding);
#   4. the report PNG of the elastic run, and summary.txt: the time to honour each event, the throughput of each phase
#      against the static policy of its budget, and what the static policy planned for 40 GiB holds (against 12 GiB).
# Usage, from the repository root with .gpu/ packed and carried:  bash scripts/gpu/elastic-6.7b.sh   (writes under $OUT)
#   bash scripts/gpu/elastic-6.7b.sh honour   runs only step 3 and prints its honour times with their breakdown, and each
#   event against the layer step in progress (scripts/gpu/elastic-summary.py OUT --honour).
#   bash scripts/gpu/elastic-6.7b.sh elastic  runs steps 1, 2 and 4 only (no nine-change job).
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
ai() { local seconds=$1; shift; timeout "$seconds" bash .gpu/run.sh actorinfer "$@"; }
card=$(nvidia-smi -L | head -1)
echo "$card" | tee "$out/card.txt"
case $card in *H200*) profile=hocon/hardware/h200-141gb.json ;; *) profile=hocon/hardware/h100-80gb.json ;; esac
work=$(mktemp -d)

python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
rng = random.Random(6700)
with open(f"{work}/in.jsonl", "w") as f:
    for i in range(2400):
        ids = [2] + [rng.randrange(10, 50000) for _ in range(511)]
        f.write(json.dumps({"id": f"r{i}", "prompt": ids, "max_tokens": 32, "temperature": 0, "ignore_eos": True}) + "\n")
# The honour job decodes for most of its time (prompts of 128 tokens, 128 new ones each), so that changes land during
# decoding (a layer step of well under a millisecond) and not only during a prefill; 1,000 of them (128,000 tokens), so
# that it outlasts its last change (at 45 s).
with open(f"{work}/in-honour.jsonl", "w") as f:
    for i in range(1000):
        ids = [2] + [rng.randrange(10, 50000) for _ in range(127)]
        f.write(json.dumps({"id": f"h{i}", "prompt": ids, "max_tokens": 128, "temperature": 0, "ignore_eos": True}) + "\n")
def schedule(name, events):
    with open(f"{work}/{name}.jsonl", "w") as f:
        for e in events: f.write(json.dumps(e) + "\n")
# The first phase is long enough (20 s) to hold several blocks after the first one's prefill.
schedule("elastic", [{"at_step": 0, "tier": "gpu", "budget": "40GiB"}, {"at_ms": 20000, "tier": "gpu", "budget": "12GiB"},
                     {"at_ms": 32000, "tier": "gpu", "budget": "24GiB"}, {"at_ms": 42000, "tier": "gpu", "budget": "40GiB"}])
for gib in (12, 24, 40):
    schedule(f"static-{gib}", [{"at_step": 0, "tier": "gpu", "budget": f"{gib}GiB"}])
# More samples of the time to honour: nine changes, 5 s apart, down and up.
schedule("honour", [{"at_step": 0, "tier": "gpu", "budget": "40GiB"}] +
         [{"at_ms": 5000 * (i + 1), "tier": "gpu", "budget": f"{gib}GiB"} for i, gib in enumerate((12, 24, 40, 16, 32, 12, 40, 20, 40))])
PY
# The largest block geometry the planner may choose from (GPU batch size x GPU batches): within it, at each block start,
# the cost model picks the number of GPU batches and the largest batch size that fits the budget.
geometry=(--gpu-batch-size "${GPU_BATCH_SIZE:-128}" --num-gpu-batches "${NUM_GPU_BATCHES:-4}")
common=(--model opt-6.7b --dummy --device cuda --dtype float16 "${geometry[@]}" --cpu-mem 100GiB --hardware "$profile")
echo "geometry: ${geometry[*]}" | tee -a "$out/card.txt"
# The host's and the GPU's state every second (CPU use and steal, clocks), to tell a slow phase's cause.
vmstat -t 1 > "$out/vmstat.txt" 2>&1 &
sampler=$!
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,utilization.gpu,power.draw,temperature.gpu --format=csv -l 1 > "$out/gpu-samples.csv" 2>&1 &
gpusampler=$!
trap 'kill $sampler $gpusampler 2>/dev/null' EXIT

mode=${1:-all}
if [ "$mode" = honour ]; then
  ai 240 generate "${common[@]}" --input "$work/in-honour.jsonl" --output "$work/out-honour.jsonl" --pressure "$work/honour.jsonl" \
    --run-dir "$out/run-honour" 2> "$out/honour.log"
  grep -E "^pressure:|honour" "$out/honour.log"
  python3 scripts/gpu/elastic-summary.py "$out" --honour
  tar czf "$out/runs-honour.tgz" -C "$out" run-honour && rm -rf "$out"/run-honour
  exit 0
fi
echo "== elastic: 40 -> 12 -> 24 -> 40 GiB"
ai 240 generate "${common[@]}" --input "$work/in.jsonl" --output "$work/out-elastic.jsonl" --pressure "$work/elastic.jsonl" \
  --run-dir "$out/run-elastic" 2> "$out/elastic.log"
tail -3 "$out/elastic.log"
ai 60 report --run "$out/run-elastic" --output "$out/report-6.7b-elastic.png" 2>&1 | tail -1

if [ "$mode" != elastic ]; then
  echo "== honour: nine budget changes, 5 s apart"
  ai 240 generate "${common[@]}" --input "$work/in-honour.jsonl" --output "$work/out-honour.jsonl" --pressure "$work/honour.jsonl" \
    --run-dir "$out/run-honour" 2> "$out/honour.log"
  grep "^pressure:" "$out/honour.log"
fi

for spec in 12:48 24:384 40:768; do
  gib=${spec%%:*}; n=${spec##*:}
  echo "== static: $gib GiB from the start, $n requests"
  head -n "$n" "$work/in.jsonl" > "$work/in-$gib.jsonl"
  ai 150 generate "${common[@]}" --input "$work/in-$gib.jsonl" --output "$work/out-$gib.jsonl" --pressure "$work/static-$gib.jsonl" \
    --run-dir "$out/run-static-$gib" 2> "$out/static-$gib.log"
  tail -2 "$out/static-$gib.log"
done

python3 scripts/gpu/elastic-summary.py "$out" | tee "$out/summary.txt"
# The timelines come back as one archive (draw them with `actorinfer report` where fonts are installed: the GPU
# machine has none, so its PNG carries lines without labels).
# Few files come back from the GPU machine: the summary, the PNG, and one archive of the rest.
kill $sampler $gpusampler 2>/dev/null
kept=()
for f in run-elastic run-honour run-static-12 run-static-24 run-static-40 vmstat.txt gpu-samples.csv card.txt elastic.log honour.log \
    static-12.log static-24.log static-40.log; do [ -e "$out/$f" ] && kept+=("$f"); done
tar czf "$out/runs.tgz" -C "$out" "${kept[@]}" &&
  rm -rf "$out"/run-* "$out/vmstat.txt" "$out/gpu-samples.csv" "$out"/*.log
