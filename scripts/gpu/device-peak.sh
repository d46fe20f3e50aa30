#!/usr/bin/env bash
# On the GPU machine (issue 28, item 4): the device-reported GPU peak against the planner's prediction, per policy.
#   memory: under scripts/gpu/kernels-in-process.py --memory, so that libtorch's caching allocator's own peaks (allocated,
#           reserved) and segments by stream are printed beside bench's JSON: OPT-6.7B all on the GPU (32 x 1), OPT-30B
#           20/80 by FlexGen's rule and spread (48 x 1, CPU attention), OPT-30B --policy auto under 16 GiB  ~3 min
#   budgets: bench standalone, as a user runs it, under budgets: OPT-6.7B --policy auto at 12 GiB, OPT-13B 30/70 (32 x 2),
#           OPT-30B --policy auto --weight-placement spread at 24 GiB, OPT-30B --policy auto with 4-bit weights and cache
#           at 16 GiB                                                                                              ~4 min
# Writes under $OUT: each run's output, and summary.txt: per run the policy, throughput, device-reported peak, the
# predicted device peak (predicted_device_peak_bytes) and the tensors (predicted_gpu_peak_bytes), and for memory runs the
# allocator's peaks. Needs .gpu/ (pack.sh) carried.
# RUNS (default: all) names the runs to keep within the steps, e.g. RUNS="a67-12 c30-16".
# Usage: [STEPS="memory budgets"] [RUNS="..."] bash scripts/gpu/device-peak.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi -L > "$out/card.txt"
bash .gpu/run.sh actorinfer version > /dev/null 2>&1   # unpacks the build once
prof=${HARDWARE:-hocon/hardware/h200-141gb.json}
[ -z "${HARDWARE:-}" ] && grep -q H100 "$out/card.txt" && prof=hocon/hardware/h100-80gb.json
common=(--dummy --device cuda --dtype float16 --prompt-len 512 --repeat 1 --json)
names=()
wanted() { [ -z "${RUNS:-}" ] || [[ " $RUNS " == *" $1 "* ]]; }
standalone() { local name=$1 limit=$2; shift 2
  wanted "$name" || return 0
  timeout -k 5 "$limit" bash .gpu/run.sh actorinfer bench "${common[@]}" "$@" > "$out/$name.json" 2> "$out/$name.log"
  echo "$name: exit $?" | tee -a "$out/exits.txt"; names+=("$name"); }
in_process() { local name=$1 limit=$2; shift 2
  wanted "$name" || return 0
  ( . scripts/gpu/in-process-env.sh
    # Python initializes the allocator before the build could set its default, so the default is set here.
    export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
    timeout -k 5 "$limit" python3 scripts/gpu/kernels-in-process.py --memory --name "$name" --out "$out" -- bench "${common[@]}" "$@" \
      > "$out/$name.txt" 2>&1 )
  echo "$name: exit $?" | tee -a "$out/exits.txt"; names+=("$name"); }
for step in ${STEPS:-memory budgets}; do
  case $step in
    memory)
      in_process g67 100 --model opt-6.7b --gen-len 32 --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0
      in_process r30 130 --model opt-30b --gen-len 8 --gpu-batch-size 48 --num-gpu-batches 1 --percent 20 80 0 100 0 100 --cpu-attention on
      in_process s30 130 --model opt-30b --gen-len 8 --gpu-batch-size 48 --num-gpu-batches 1 --percent 20 80 0 100 0 100 --cpu-attention on \
        --weight-placement spread
      in_process a30 170 --model opt-30b --gen-len 16 --policy auto --cpu-attention auto --hardware "$prof" --gpu-mem 16GiB --cpu-mem 100GiB ;;
    budgets)
      standalone a67-12 100 --model opt-6.7b --gen-len 32 --policy auto --hardware "$prof" --gpu-mem 12GiB --cpu-mem 100GiB
      standalone f13 100 --model opt-13b --gen-len 8 --gpu-batch-size 32 --num-gpu-batches 2 --percent 30 70 0 100 0 100 --cpu-attention on
      standalone a30s-24 150 --model opt-30b --gen-len 8 --policy auto --cpu-attention auto --hardware "$prof" --gpu-mem 24GiB --cpu-mem 100GiB \
        --weight-placement spread
      standalone c30-16 170 --model opt-30b --gen-len 8 --policy auto --hardware "$prof" --gpu-mem 16GiB --cpu-mem 100GiB --compress-weight --compress-cache ;;
    *) echo "unknown step '$step' (memory, budgets)" >&2; exit 2 ;;
  esac
done
python3 - "$out" "${names[@]}" > "$out/summary.txt" <<'PY'
import json, os, re, sys
out, names = sys.argv[1], sys.argv[2:]
g = 1 << 30
print(open(f"{out}/card.txt").read().strip())
for n in names:
    try:
        if os.path.exists(f"{out}/{n}.txt"):  # run in-process: bench's JSON among the allocator's statistics
            text = open(f"{out}/{n}.txt").read()
            stats = dict(re.findall(r"  (allocated_bytes.all.peak|reserved_bytes.all.peak): ([0-9.]+) GiB", text))
            j = text[text.index("\n{") + 1:]
            o = json.loads(j[:j.index("\n}") + 2])
            extra = f"; allocator: allocated {stats.get('allocated_bytes.all.peak')} GiB, reserved {stats.get('reserved_bytes.all.peak')} GiB"
        else:
            o, extra = json.load(open(f"{out}/{n}.json")), ""
        budget = re.search(r"-(\d+)$", n)
        p = o["policy"]; dev, pred, t = o["device_reported_peak_bytes"], o.get("predicted_device_peak_bytes"), o["predicted_gpu_peak_bytes"]
        line = (f"{n}: {p['gpu_batch_size']} x {p['num_gpu_batches']}, weights gpu {p['weights']['gpu']:.3f}, cache gpu {p['cache']['gpu']:.3f}, "
                f"{p.get('weight_placement')}, compressed weights/cache {p['compress_weight']}/{p['compress_cache']}; {o['total_throughput']:.2f} token/s; "
                f"device {dev / g:.2f} GiB")
        if budget: line += f" ({'within' if dev <= int(budget.group(1)) * g else 'OVER'} its {budget.group(1)} GiB budget)"
        if pred: line += f", predicted {pred / g:.2f} GiB (predicted / device {pred / dev:.3f})"
        line += f", tensors {t / g:.2f} GiB ({t / dev:.3f}), context {o['device_reserve_bytes']['context'] / g:.2f} GiB{extra}"
        print(line)
    except Exception as e:
        print(f"{n}: no result ({e})")
PY
cat "$out/summary.txt"
exit 0
