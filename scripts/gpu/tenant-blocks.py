#!/usr/bin/env python3
"""One model's blocks in a node's log, grouped by size: how long a block of that many sequences took, and how much of the
replay the model spent in blocks (blocks run one at a time, so a sum near the replay's length means a queue was waiting
nearly all the time), and how many blocks were full (as many sequences as their policy holds: more may have waited, kept
out by the model's budget). A node of several models names each model's scheduler model-N-scheduler; a node of one model,
scheduler.

Usage: tenant-blocks.py NODE_LOG [MODEL_INDEX (default 0; -1: the node of one model)] [LABEL]"""
import re
import statistics
import sys

log = sys.argv[1]
index = int(sys.argv[2]) if len(sys.argv) > 2 else 0
label = sys.argv[3] if len(sys.argv) > 3 else log
who = "/scheduler]" if index < 0 else f"/model-{index}-scheduler]"
finished = re.compile(r"\] block (\d+): (\d+) tokens in ([\d.]+) s: [\d.]+ token/s measured.*?full block of (\d+) \((\d+) sequences ran\)")
blocks = []
for line in open(log, errors="replace"):
    if who not in line:
        continue
    m = finished.search(line)
    if m:
        blocks.append((int(m.group(2)), float(m.group(3)), int(m.group(5)), int(m.group(4))))
if not blocks:
    sys.exit(f"{label}: no finished block of model {index} in {log}")
tokens = sum(b[0] for b in blocks)
seconds = sum(b[1] for b in blocks)
print(f"{label}: {len(blocks)} blocks, {tokens} tokens in {seconds:.1f} s of blocks ({tokens / seconds:.0f} token/s), "
      f"{statistics.mean(b[2] for b in blocks):.1f} sequences a block on average, {sum(b[2] >= b[3] for b in blocks)} full")
for low, high in ((1, 8), (9, 16), (17, 32), (33, 64), (65, 128), (129, 1 << 30)):
    group = [b for b in blocks if low <= b[2] <= high]
    if group:
        print(f"  {low}-{high if high < 1 << 30 else 'more'} sequences: {len(group)} blocks of {statistics.mean(b[2] for b in group):.0f} on average, "
              f"{statistics.mean(b[1] for b in group):.3f} s a block, {sum(b[0] for b in group) / sum(b[1] for b in group):.0f} token/s")
