#!/usr/bin/env python3
"""Writes N greedy requests of random token ids (</s> first) as generate's JSONL input.
Usage: prompts.py OUT N PROMPT_LEN MAX_TOKENS SEED"""
import json, random, sys

out, n, length, max_tokens, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
with open(out, "w") as f:
    for i in range(n):
        ids = [2] + [rng.randrange(10, 50000) for _ in range(length - 1)]
        f.write(json.dumps({"id": f"r{i}", "prompt": ids, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}) + "\n")
