"""Writes /tmp/in-MODEL.jsonl: one greedy request per prompt of the fixture .gpu/fixtures/MODEL, as long as its reference.
Usage: python3 scripts/gpu/fixture-requests.py MODEL"""
import json, sys
m = sys.argv[1]
with open(f"/tmp/in-{m}.jsonl", "w") as f:
    for i, l in enumerate(open(f".gpu/fixtures/{m}/expected.jsonl")):
        d = json.loads(l)
        f.write(json.dumps({"id": f"r{i}", "prompt": d.get("prompt_text", d["prompt_ids"]), "max_tokens": len(d["greedy_new_tokens"]),
                            "temperature": 0, "ignore_eos": True}) + "\n")
