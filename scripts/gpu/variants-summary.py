#!/usr/bin/env python3
"""Prints one line per (row, variant) of a GPU script's bench runs, OUT/ROW-VARIANT.json, for the rows gpu67 and auto67:
throughput (median and runs), prefill, the decoding step, the policy, the ratio to the base variant and, for gpu67, to
FlexGen's OUT/flexgen-gpu67.txt. Used by scripts/gpu/fused-kernels.sh, graphs-fused.sh and fewer-kernels.sh.
Usage: python3 scripts/gpu/variants-summary.py OUT BASE VARIANT..."""
import json
import re
import sys

out, base_name, variants = sys.argv[1], sys.argv[2], sys.argv[3:]


def load(name):
    try:
        return json.load(open(f"{out}/{name}.json"))
    except (OSError, ValueError):
        return None


flex = None
try:
    found = re.findall(r"total throughput: ([0-9.]+) token/s", open(f"{out}/flexgen-gpu67.txt").read())
    flex = float(found[-1]) if found else None
except OSError:
    pass
for row in ("gpu67", "auto67"):
    base = load(f"{row}-{base_name}")
    for v in variants:
        o = load(f"{row}-{v}")
        if not o:
            continue
        p = o["policy"]
        line = (f"{row} {v}: {o['total_throughput']:.2f} token/s (runs {', '.join(f'{x:.2f}' for x in o['total_throughput_runs'])}); "
                f"prefill {o['prefill_latency_s']:.3f} s, decode {o['decode_latency_s'] / 31 * 1000:.2f} ms a step; {p['gpu_batch_size']} x {p['num_gpu_batches']}")
        if base and v != base_name:
            line += f"; {o['total_throughput'] / base['total_throughput']:.3f}x {base_name}"
        if flex and row == "gpu67":
            line += f"; {o['total_throughput'] / flex:.2f}x FlexGen ({flex:.2f})"
        print(line)
