"""The summary of `scripts/gpu/elastic-6.7b.sh`'s runs, from the folder it wrote (run-* timelines and logs).
Usage: python3 scripts/gpu/elastic-summary.py OUT            the whole summary (elastic, honour and static runs)
       python3 scripts/gpu/elastic-summary.py OUT --honour   only the nine-change job's events against the layer steps"""
import json, re, statistics, sys
out = sys.argv[1]
def timeline(name):
    try: return [json.loads(l) for l in open(f"{out}/{name}/timeline.jsonl")]
    except Exception as e: print(f"{name}: {e}"); return []
def rate(samples, t0, t1):
    s = [x for x in samples if x["kind"] == "step" and t0 <= x["t_ms"] < t1]
    return (s[-1]["tokens"] - s[0]["tokens"]) / ((s[-1]["t_ms"] - s[0]["t_ms"]) / 1000) if len(s) >= 2 and s[-1]["t_ms"] > s[0]["t_ms"] else float("nan")
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
if "--honour" in sys.argv[2:]:
    against_layer_step("run-honour", "honour.log", "honour")
    sys.exit(0)
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
against_layer_step("run-elastic", "elastic.log", "elastic")
against_layer_step("run-honour", "honour.log", "honour")
print(f"static policy planned for 40 GiB: holds up to {static[40][1] / 2**30:.2f} GiB; under a 12 GiB budget it would exceed it by "
      f"{(static[40][1] - 12 * 2**30) / 2**30:.2f} GiB (it never gives memory back: nothing in a static policy reacts to a budget)")
