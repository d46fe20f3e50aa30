#!/usr/bin/env python3
"""The throughput comparison of two settings that ran the same job, as the cluster GPU scripts print it.
Usage: jobs-summary.py JOBS OUT REPS A "A's label" B "B's label" [NAME ...]
JOBS holds lines "NAME state seconds tokens" (node-lib.sh's node_job writes them), the jobs of setting A named A-1 .. A-REPS
(A-1 on fresh processes), B's likewise. Prints the card (OUT/card.txt), every job, the ratio B / A of the first jobs and of
the medians of the later ones, and how many outputs of B-1 and of each NAME equal A-1's (OUT/NAME-results.jsonl)."""
import json, statistics, sys

jobs_file, out, reps, a, a_label, b, b_label, *others = sys.argv[1:]
reps = int(reps)
jobs = {}
for line in open(jobs_file):
    name, state, seconds, tokens = line.split()
    jobs[name] = (state, float(seconds), int(tokens))
print(open(f"{out}/card.txt").read().strip())
for name, (state, seconds, tokens) in jobs.items():
    print(f"{name}: {state}, {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.1f} token/s")


def rate(name):
    state, seconds, tokens = jobs.get(name, ("missing", 1, 0))
    return tokens / seconds if state == "completed" else None


first = rate(f"{a}-1"), rate(f"{b}-1")
if all(first):
    print(f"first jobs (fresh processes): {a_label} {first[0]:.1f}, {b_label} {first[1]:.1f} token/s; ratio {first[1] / first[0]:.3f}")
if reps > 1:
    later = [[rate(f"{side}-{r}") for r in range(2, reps + 1)] for side in (a, b)]
    if all(x is not None for side in later for x in side):
        x, y = statistics.median(later[0]), statistics.median(later[1])
        print(f"later jobs (median of {reps - 1}): {a_label} {x:.1f}, {b_label} {y:.1f} token/s; ratio {y / x:.3f}")


def outputs(name):
    try:
        return {json.loads(l)["id"]: json.loads(l).get("output_ids") for l in open(f"{out}/{name}-results.jsonl") if l.strip()}
    except (OSError, ValueError):
        return {}


ref = outputs(f"{a}-1")
for name in [f"{b}-1", *others]:
    got = outputs(name)
    print(f"outputs identical ({name} vs {a}-1): {sum(ref.get(k) == v for k, v in got.items())} of {len(ref)}")
