#!/usr/bin/env bash
# On the GPU machine: the elastic-memory demonstration with OPT-6.7B (random weights, float16, prompt 512, 32 tokens).
#   1. one job under a GPU budget stepping 40 -> 12 -> 24 -> 40 GiB at 20, 32 and 42 s (generate --pressure, timeline in run-elastic/);
#   2. the same work under each phase's budget held from the start: a static policy planned for that budget;
#   3. a second job with nine budget changes 5 s apart, for more samples of the time to honour each (a decoding-heavy
#      workload, prompt 128 and 128 tokens, so that changes land during decoding);
#   4. the report PNG of the elastic run, and summary.txt: the time to honour each event, the throughput of each phase
#      against the static policy of its budget, and what the static policy planned for 40 GiB holds (against 12 GiB).
# Usage, from the repository root with .gpu/ packed and carried:  bash scripts/gpu/elastic-6.7b.sh   (writes under $OUT)
#   bash scripts/gpu/elastic-6.7b.sh honour   runs only step 3 and prints its honour times with their breakdown.
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
  tar czf "$out/runs-honour.tgz" -C "$out" run-honour && rm -rf "$out"/run-honour
  exit 0
fi
echo "== elastic: 40 -> 12 -> 24 -> 40 GiB"
ai 240 generate "${common[@]}" --input "$work/in.jsonl" --output "$work/out-elastic.jsonl" --pressure "$work/elastic.jsonl" \
  --run-dir "$out/run-elastic" 2> "$out/elastic.log"
tail -3 "$out/elastic.log"
ai 60 report --run "$out/run-elastic" --output "$out/report-6.7b-elastic.png" 2>&1 | tail -1

echo "== honour: nine budget changes, 5 s apart"
ai 240 generate "${common[@]}" --input "$work/in-honour.jsonl" --output "$work/out-honour.jsonl" --pressure "$work/honour.jsonl" \
  --run-dir "$out/run-honour" 2> "$out/honour.log"
grep "^pressure:" "$out/honour.log"

for spec in 12:48 24:384 40:768; do
  gib=${spec%%:*}; n=${spec##*:}
  echo "== static: $gib GiB from the start, $n requests"
  head -n "$n" "$work/in.jsonl" > "$work/in-$gib.jsonl"
  ai 150 generate "${common[@]}" --input "$work/in-$gib.jsonl" --output "$work/out-$gib.jsonl" --pressure "$work/static-$gib.jsonl" \
    --run-dir "$out/run-static-$gib" 2> "$out/static-$gib.log"
  tail -2 "$out/static-$gib.log"
done

python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, re, statistics, sys
out = sys.argv[1]
def timeline(name):
    try: return [json.loads(l) for l in open(f"{out}/{name}/timeline.jsonl")]
    except Exception as e: print(f"{name}: {e}"); return []
def rate(samples, t0, t1):
    s = [x for x in samples if x["kind"] == "step" and t0 <= x["t_ms"] < t1]
    return (s[-1]["tokens"] - s[0]["tokens"]) / ((s[-1]["t_ms"] - s[0]["t_ms"]) / 1000) if len(s) >= 2 and s[-1]["t_ms"] > s[0]["t_ms"] else float("nan")
print(open(f"{out}/card.txt").read().strip())
el = timeline("run-elastic")
events = [x for x in el if x["kind"] == "pressure"]
steps = [x for x in el if x["kind"] == "step"]
log = open(f"{out}/elastic.log").read()
m = re.search(r"honour times in order \(ms\): (.*)", log)
honour = [float(v) for v in m.group(1).split()] if m else []
gaps = [b["t_ms"] - a["t_ms"] for a, b in zip(steps, steps[1:])]
layer_ms = statistics.median(gaps) / 32 if gaps else float("nan")
print(f"events: {len(events)}; honour times (ms): {honour}; median {statistics.median(honour) if honour else float('nan'):.1f}, max {max(honour) if honour else float('nan'):.1f}")
print(f"one decoding step (median over the elastic run): {statistics.median(gaps) if gaps else float('nan'):.1f} ms, one layer step ~{layer_ms:.2f} ms")
for line in log.splitlines():
    if line.startswith("pressure:"): print(line)
static = {}
for gib in (12, 24, 40):
    st = timeline(f"run-static-{gib}")
    s = [x for x in st if x["kind"] == "step"]
    static[gib] = (rate(st, 0, 1e12), max((x["device_bytes"] for x in s), default=0), max((x["block_size"] for x in s), default=0))
    policies = sorted({x["detail"].split(";")[0] for x in st if x["kind"] == "policy"})
    print(f"static {gib} GiB: {static[gib][0]:.1f} token/s, block {static[gib][2]} ({', '.join(policies)}), device bytes held at most {static[gib][1] / 2**30:.2f} GiB")
print("elastic run's policies in order: " + ", ".join(x["detail"].split(";")[0] for x in el if x["kind"] == "policy"))
bounds = [e["t_ms"] for e in events] + [steps[-1]["t_ms"] + 1 if steps else 0]
for i, e in enumerate(events):
    value, unit = re.search(r"([\d.]+) (\w+)$", e["detail"]).groups()
    gib = round(float(value) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit] / 2**30)
    r = rate(el, bounds[i], bounds[i + 1])
    # What the device held once the event was honoured (samples between the change and its honour still show the old block).
    honoured_at = bounds[i] + (honour[i] if i < len(honour) else 0)
    held = max((x["device_bytes"] for x in steps if honoured_at <= x["t_ms"] < bounds[i + 1]), default=0)
    blocks = sorted({x["block_size"] for x in steps if bounds[i] <= x["t_ms"] < bounds[i + 1]})
    ref = static.get(gib, (float("nan"),))[0]
    print(f"phase {i + 1} ({e['detail']}, {bounds[i] / 1000:.1f} s to {bounds[i + 1] / 1000:.1f} s): {r:.1f} token/s, "
          f"{r / ref * 100 if ref == ref and ref else float('nan'):.0f}% of the static policy's {ref:.1f}; block sizes {blocks}; device bytes held at most {held / 2**30:.2f} GiB once honoured")
# Messages of the tensor thread that took 200 ms or more (a stall, placed by what ran; t is when it ended).
for run in ("run-elastic", "run-honour", "run-static-12", "run-static-24", "run-static-40"):
  slow = [x for x in timeline(run) if x["kind"] == "slow"]
  print(f"{run}: tensor-thread messages of 200 ms or more: " + ("; ".join(f"t={x['t_ms'] / 1000:.2f} s {x['detail']}" for x in slow) or "none"))
# Each event of a run against the layer step in progress, by where the scheduler says the running block was when the
# change reached it: in a prefill, the prefill layer message the tensor thread was running (its longest message on the
# change's way) or else the step in progress over 32 layers (from the step before the change to the step after: for a
# fall that drops the block, that runs on to the next block's prefill, at most about twice the prefill); while decoding,
# the median of the steps just before the change over 32 layers. Step times alone cannot tell a prefill: a fall that
# drops the block is followed by the next block's prefill, so a decoding step in progress looks long too.
def against_layer_step(run, logname, label):
  ho = timeline(run)
  hsteps = [x for x in ho if x["kind"] == "step"]
  hlog = open(f"{out}/{logname}").read() if ho else ""
  m = re.search(r"honour times in order \(ms\): (.*)", hlog)
  htimes = [float(v) for v in m.group(1).split()] if m else []
  m = re.search(r"each take-up as arrival \+ to the boundary \+ applying \(ms\): (.*)", hlog)
  hparts = m.group(1).split() if m else []
  m = re.search(r"within the new budget at the change .*?in order: (.*)", hlog)
  hwithin = m.group(1).split() if m else []
  m = re.search(r"taken up \(from the change until applied\) in order \(ms\): (.*)", hlog)
  htake = m.group(1).split() if m else []
  m = re.search(r"longest message on each one's way, to its arrival \| to its boundary: (.*)", hlog)
  hbehind = [x.split(" | ")[0] for x in m.group(1).split("; ")] if m else []
  m = re.search(r"where the running block was at each arrival: (.*)", hlog)
  hwhere = m.group(1).split() if m else []
  under = 0
  for i, e in enumerate(x for x in ho if x["kind"] == "pressure"):
    if i == 0 or i >= len(htimes): continue
    before = [x["t_ms"] for x in hsteps if x["t_ms"] <= e["t_ms"]][-4:]
    after = [x["t_ms"] for x in hsteps if x["t_ms"] > e["t_ms"]][:1]
    gap = statistics.median([b - a for a, b in zip(before, before[1:])]) if len(before) >= 2 else float("nan")
    pending = (after[0] - before[-1]) if before and after else float("nan")
    behind = hbehind[i] if i < len(hbehind) else "nothing"
    where = hwhere[i] if i < len(hwhere) else "decoding"
    prefill = re.match(r"layer compute \(prefill\) ([\d.]+) ms", behind)
    if prefill: layer, kind = float(prefill.group(1)), "a prefill layer message"
    elif where == "prefill": layer, kind = pending / 32, "a prefill, the step in progress over 32 layers"
    else: layer, kind = gap / 32, where
    if layer != layer:
        print(f"{label} event {i} ({e['detail']}): {htimes[i]:.1f} ms; no step before it to tell the layer step in progress")
        continue
    ok = htimes[i] < layer
    under += ok
    rose = i < len(hwithin) and hwithin[i] == "yes"
    how = f"within at the change, taken up in {htake[i]} ms = {hparts[i]}" if rose and i < len(htake) else (hparts[i] if i < len(hparts) else '?')
    print(f"{label} event {i} ({e['detail']}): {htimes[i]:.1f} ms ({how}); layer step in progress ~{layer:.2f} ms"
          f" ({kind}), the tensor thread running {behind}: {'under' if ok else 'over'}")
  if len(htimes) > 1: print(f"{label} run: {under} of {len(htimes) - 1} run-time events under one layer step; median {statistics.median(htimes[1:]):.1f} ms, max {max(htimes[1:]):.1f} ms")
against_layer_step("run-elastic", "elastic.log", "elastic")
against_layer_step("run-honour", "honour.log", "honour")
print(f"static policy planned for 40 GiB: holds up to {static[40][1] / 2**30:.2f} GiB; under a 12 GiB budget it would exceed it by "
      f"{(static[40][1] - 12 * 2**30) / 2**30:.2f} GiB (it never gives memory back: nothing in a static policy reacts to a budget)")
PY
# The timelines come back as one archive (draw them with `actorinfer report` where fonts are installed: the GPU
# machine has none, so its PNG carries lines without labels).
# Few files come back from the GPU machine: the summary, the PNG, and one archive of the rest.
kill $sampler $gpusampler 2>/dev/null
tar czf "$out/runs.tgz" -C "$out" run-elastic run-honour run-static-12 run-static-24 run-static-40 vmstat.txt gpu-samples.csv \
    card.txt elastic.log honour.log static-12.log static-24.log static-40.log &&
  rm -rf "$out"/run-* "$out/vmstat.txt" "$out/gpu-samples.csv" "$out"/*.log
