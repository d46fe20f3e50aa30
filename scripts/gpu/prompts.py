#!/usr/bin/env python3
"""Writes N greedy requests of random token ids (</s> first) as generate's JSONL input (a job's lines).
Usage: prompts.py OUT N PROMPT_LEN MAX_TOKENS SEED [MODEL]
Ids are drawn from 10 to 50,000, or to the vocabulary of MODEL when it is a folder with a config.json."""
import json, os, random, sys

out, n, length, max_tokens, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = sys.argv[6] if len(sys.argv) > 6 else ""
vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"] if os.path.isdir(model) else 50000
rng = random.Random(seed)
with open(out, "w") as f:
    for i in range(n):
        ids = [2] + [rng.randrange(10, vocab) for _ in range(length - 1)]
        f.write(json.dumps({"id": f"r{i}", "prompt": ids, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}) + "\n")
