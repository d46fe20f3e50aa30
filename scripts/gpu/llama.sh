#!/usr/bin/env bash
# On the GPU machine, in one call (issue 24, acceptance 4): the LLaMA family measured on the card named in card.txt.
#   1. ours-8b   `bench` Llama-3.1-8B, random weights, float16, batch 32 all on the GPU (weights, cache, activations),
#                prompt 512 / output 32, median of REPEAT8 runs after a warm-up;
#   2. hf-8b     Hugging Face transformers' generate() on the same model size, batch and lengths, all on the GPU
#                (../shared/baselines/hf/hf_generate.py);
#   3. ours-70b  `bench` Llama-3.1-70B, random weights, --compress-weight, --policy auto under a 40 GiB GPU / 100 GiB CPU
#                budget with the card's committed hardware profile, median of REPEAT70 (2) runs after a warm-up (about 140 s a
#                run as planned): the planner's predicted throughput beside the measured; host memory sampled meanwhile;
#   4. summary.txt: ours / HF for 8B (>= 3x asked), measured / predicted for 70B (within 25% asked).
# Usage, from the repository root with .gpu/ packed and carried:  bash scripts/gpu/llama.sh   (writes under $OUT; about 5 minutes)
# Each step has a time limit (LIMIT8, LIMIT_HF, LIMIT70 seconds: 110, 140, 540). The 70B block the planner now picks
# (48 x 10 on an H100: about 150 s of warm-up and 140 s a run) needs a call of its own: STEPS="ours8 hf", then STEPS=ours70.
# Overrides for a scaled-down run elsewhere (e.g. on the CPU): AI (the command running actorinfer), MODEL8, MODEL70, DEVICE,
# DTYPE, BATCH, PROMPT, GEN, REPEAT8, REPEAT70, GPU_MEM, CPU_MEM, HARDWARE, HF (the baseline's script; SKIP_HF=1 skips it),
# STEPS (a subset of "ours8 hf ours70").
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
ai=${AI:-bash .gpu/run.sh actorinfer}
model8=${MODEL8:-llama-3.1-8b}
model70=${MODEL70:-llama-3.1-70b}
device=${DEVICE:-cuda}
dtype=${DTYPE:-float16}
batch=${BATCH:-32}
prompt=${PROMPT:-512}
gen=${GEN:-32}
gpu_mem=${GPU_MEM:-40GiB}
cpu_mem=${CPU_MEM:-100GiB}
steps=${STEPS:-ours8 hf ours70}
has() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }

if command -v nvidia-smi > /dev/null; then
  card=$(nvidia-smi -L | head -1)
else
  card="no GPU ($(nproc) CPU cores)"
fi
echo "$card" | tee "$out/card.txt"
case $card in *H200*) profile=hocon/hardware/h200-141gb.json ;; *) profile=hocon/hardware/h100-80gb.json ;; esac
profile=${HARDWARE:-$profile}
hf=${HF:-}
if [ -z "$hf" ]; then
  for f in ../shared/baselines/hf/hf_generate.py shared/baselines/hf/hf_generate.py; do [ -f "$f" ] && { hf=$f; break; }; done
fi
# Host memory seen by the system every 5 seconds while the steps run (the 70B setup is the one to watch).
( while :; do echo "$(date +%T) $(free -m | awk '/^Mem:/ {print "used " $3 " MiB, available " $7 " MiB"}')"; sleep 5; done ) > "$out/host-memory.txt" 2>&1 &
watcher=$!
trap 'kill $watcher 2> /dev/null' EXIT

# step NAME LIMIT COMMAND...: runs it under a time limit, stdout to NAME.json, stderr to NAME.log (also shown).
step() {
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee "$out/$name.log"
  local start; start=$(date +%s)
  timeout "$limit" "$@" > "$out/$name.json" 2> >(grep --line-buffered -v "^\[" | tee -a "$out/$name.log" >&2)
  local rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - start )) s" | tee -a "$out/$name.log"
}

has ours8 && step ours-8b "${LIMIT8:-110}" $ai bench --model "$model8" --dummy --device "$device" --dtype "$dtype" \
  --prompt-len "$prompt" --gen-len "$gen" --gpu-batch-size "$batch" --num-gpu-batches 1 --percent 100 0 100 0 100 0 \
  --cpu-attention off --repeat "${REPEAT8:-3}" --json

if has hf && [ "${SKIP_HF:-0}" != 1 ]; then
  if [ -n "$hf" ]; then
    echo "== hf-8b: python3 $hf $model8 $batch $prompt $gen" | tee "$out/hf-8b.log"
    timeout "${LIMIT_HF:-140}" python3 "$hf" "$model8" "$batch" "$prompt" "$gen" 2>&1 | grep --line-buffered -v -i "warn" | tee -a "$out/hf-8b.log"
    echo "== hf-8b: exit ${PIPESTATUS[0]}" | tee -a "$out/hf-8b.log"
  else
    echo "== hf-8b: hf_generate.py not found (set HF)" | tee "$out/hf-8b.log"
  fi
fi

has ours70 && step ours-70b "${LIMIT70:-540}" $ai bench --model "$model70" --dummy --device "$device" --dtype "$dtype" \
  --prompt-len "$prompt" --gen-len "$gen" --policy auto --compress-weight --cpu-attention auto --gpu-mem "$gpu_mem" --cpu-mem "$cpu_mem" \
  --hardware "$profile" --repeat "${REPEAT70:-2}" --json

python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, re, sys
out = sys.argv[1]
def bench(name):
    """The JSON object bench printed (stdout may hold other lines before it), or None."""
    try:
        text = open(f"{out}/{name}.json").read()
    except OSError:
        return None
    at = text.find("{")
    while at >= 0:
        try:
            return json.JSONDecoder().raw_decode(text[at:])[0]
        except ValueError:
            at = text.find("{", at + 1)
    return None
print(open(f"{out}/card.txt").read().strip())
ours = bench("ours-8b")
hf = None
try:
    m = re.search(r"^(\S+) batch (\d+) prompt (\d+) gen (\d+) gpu: ([\d.]+) s, ([\d.]+) token/s.*?peak gpu ([\d.]+) GiB", open(f"{out}/hf-8b.log").read(), re.M)
    if m: hf = float(m.group(6)); hf_line = m.group(0)
except OSError:
    pass
if ours:
    print(f"ours 8B: {ours['model']} block {ours['block_size']}, prompt {ours['prompt_len']}, gen {ours['gen_len']}: "
          f"{ours['total_throughput']:.1f} token/s (runs {', '.join(f'{r:.1f}' for r in ours['total_throughput_runs'])}; "
          f"prefill {ours['prefill_latency_s']:.3f} s, decode {ours['decode_latency_s']:.3f} s)")
else:
    print("ours 8B: no result (see ours-8b.log)")
print(f"HF 8B: {hf_line}" if hf else "HF 8B: no result (see hf-8b.log)")
if ours and hf:
    ratio = ours["total_throughput"] / hf
    print(f"8B ours / HF = {ratio:.2f}x ({'meets' if ratio >= 3 else 'below'} the 3x asked)")
big = bench("ours-70b")
if big:
    measured = big["total_throughput"]
    print(f"ours 70B: {big['model']} compressed weights, block {big['block_size']}: {measured:.2f} token/s "
          f"(prefill {big['prefill_latency_s']:.2f} s, decode {big['decode_latency_s']:.2f} s; weights loaded in {big['weights_load_s']:.1f} s); "
          f"policy {json.dumps(big['policy'])}")
    print(f"  peak accounted gpu {big['peak_memory_bytes']['gpu'] / 2**30:.2f} GiB, cpu {big['peak_memory_bytes']['cpu'] / 2**30:.2f} GiB; "
          f"device reported {(big.get('device_reported_peak_bytes') or 0) / 2**30:.2f} GiB")
    for key, label in (("predicted_throughput", "search"), ("node_planner_predicted_throughput", "node planner")):
        predicted = big.get(key)
        if predicted:
            ratio = measured / predicted
            print(f"70B measured / predicted ({label}, {predicted:.2f} token/s) = {ratio:.3f} "
                  f"({'within' if abs(ratio - 1) <= 0.25 else 'outside'} 25%)")
    if big.get("node_planner_policy"): print(f"  node planner: {big['node_planner_policy']}")
else:
    print("ours 70B: no result (see ours-70b.log)")
try:
    rows = [l.split() for l in open(f"{out}/host-memory.txt") if "used" in l]
    print(f"host memory: used at most {max(int(r[2]) for r in rows)} MiB, available at least {min(int(r[5]) for r in rows)} MiB")
except (OSError, ValueError, IndexError):
    pass
PY
