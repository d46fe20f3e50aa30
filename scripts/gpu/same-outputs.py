#!/usr/bin/env python3
"""Compares two JSONL result files of the same requests (id, output_ids): how many outputs are identical, how many tokens
agree in place, and where the others first part. Usage: same-outputs.py A B WHAT   (WHAT names the two runs in the line)"""
import json, sys

a_path, b_path, what = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    a = {r["id"]: r["output_ids"] for r in map(json.loads, open(a_path))}
    b = {r["id"]: r["output_ids"] for r in map(json.loads, open(b_path))}
except (OSError, ValueError, KeyError) as e:
    print(f"outputs: not compared ({e})")
    sys.exit(0)
same = sum(a[k] == b.get(k) for k in a)
tokens = sum(len(v) for v in a.values())
agree = sum(x == y for k in a for x, y in zip(a[k], b.get(k, [])))
first = sorted(i for i in (next((i for i, (x, y) in enumerate(zip(a[k], b.get(k, []))) if x != y), None) for k in a) if i is not None)
print(f"outputs: OPT-6.7B greedy, {same} of {len(a)} identical {what}; {agree} of {tokens} tokens at the same place; first differences at {first}")
