# Sourced by the GPU scripts that compare variants of one build side by side in one call (fused-kernels.sh, graphs-fused.sh,
# fewer-kernels.sh). The sourcing script defines run_variant NAME ARGS... (the variant's flags and environment around `ai`)
# and then calls variant_step for each of its steps. Each step writes under $out; summary.txt gathers the figures.
#   variant_step gpu67 "V..."              OPT-6.7B all on the GPU, 32 x 1, --repeat 3, per variant
#   variant_step flexgen                   FlexGen on the same row (needs .baselines/flexgen carried)
#   variant_step outputs "A B [C]" NOTE    32 OPT-6.7B greedy requests per variant; how many are identical to A's
#   variant_step auto67 "V..."             OPT-6.7B `--policy auto` under 40 GiB / 100 GiB, per variant
out=${OUT:-/tmp/out}
mkdir -p "$out"
repo=$PWD
card_profile=hocon/hardware/h200-141gb.json
nvidia-smi -L 2>/dev/null | grep -q H100 && card_profile=hocon/hardware/h100-80gb.json
ai() { bash .gpu/run.sh actorinfer "$@"; }
(nvidia-smi -L 2>/dev/null || echo "no GPU") | tee "$out/card.txt"
gpu67=(--model opt-6.7b --gpu-batch-size 32 --num-gpu-batches 1 --percent 100 0 100 0 100 0)

variant_step() {
  local step=$1 list=${2:-} note=${3:-} v
  case $step in
    gpu67)
      for v in $list; do
        run_variant "$v" bench --dummy --prompt-len 512 --gen-len 32 --json "${gpu67[@]}" --repeat 3 > "$out/gpu67-$v.json" 2> "$out/gpu67-$v.log"
      done ;;
    flexgen)
      [ -d .baselines/flexgen/flexgen ] && (cd /tmp && timeout 300 python3 "$repo/.baselines/flexgen/run_flexgen_offline.py" "$repo/.baselines/flexgen" \
        --path _DUMMY_ --prompt-len 512 --gen-len 32 --log-file "$out/flexgen-gpu67.log" --model facebook/opt-6.7b --percent 100 0 100 0 100 0 \
        --gpu-batch-size 32 --num-gpu-batches 1 > "$out/flexgen-gpu67.txt" 2>&1) ;;
    outputs)
      python3 scripts/gpu/prompts.py /tmp/variant-prompts.jsonl 32 512 32 11
      for v in $list; do
        run_variant "$v" generate --dummy --device cuda --dtype float16 --input /tmp/variant-prompts.jsonl --output "$out/outputs-$v.jsonl" \
          "${gpu67[@]}" > /dev/null 2> "$out/outputs-$v.log"
      done
      local first=${list%% *}
      for v in ${list#* }; do
        python3 scripts/gpu/same-outputs.py "$out/outputs-$first.jsonl" "$out/outputs-$v.jsonl" "$first and $v${note:+ ($note)}" | tee -a "$out/summary.txt"
      done ;;
    auto67)
      for v in $list; do
        run_variant "$v" bench --dummy --prompt-len 512 --gen-len 32 --json --model opt-6.7b --policy auto --gpu-mem 40GiB --cpu-mem 100GiB \
          --hardware "$card_profile" --repeat 3 > "$out/auto67-$v.json" 2> "$out/auto67-$v.log"
      done ;;
    *) echo "unknown step '$step'" | tee -a "$out/summary.txt" ;;
  esac
}
