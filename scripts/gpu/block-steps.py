#!/usr/bin/env python3
"""Prints the median decoding step of each block of a `generate --run-dir` timeline (a gap over 300 ms is a prefill).
Usage: block-steps.py RUN_DIR LABEL"""
import json, statistics, sys

steps = [x["t_ms"] for x in map(json.loads, open(f"{sys.argv[1]}/timeline.jsonl")) if x["kind"] == "step"]
blocks, run = [], []
for a, b in zip(steps, steps[1:]):
    if b - a > 300:
        blocks.append(run)
        run = []
    else:
        run.append(b - a)
blocks.append(run)
print(f"{sys.argv[2]}: per-block median decode step (ms):", [round(statistics.median(r), 1) for r in blocks if len(r) > 1])
