#!/usr/bin/env python3
"""A soak of a node on the bundled model (127.0.0.1 only, bounded in time): completions, streamed completions, jobs,
clients that disconnect before their answer, and memory-pressure events, all at once. Every request carries an
Idempotency-Key, so the node's job list can be checked against what was sent: no acknowledged request lost, none
answered twice. Resident memory, open file handles and the managed heap are sampled every 10 s.

With --retention (the node's actorinfer.jobs.retention, e.g. 1m) finished work leaves the job store during the soak, so
each job's client waits for it and checks its results file at once (every line there, none twice); a completion is
checked by its answer. At the end, every acknowledged request is either still in the store, finished, or was checked
so when it finished.

  python3 scripts/probe/soak.py [--minutes 10] [--clients 6] [--retention 1m] [--samples samples.jsonl]"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import threading
import time

from node import KEY, Node


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--retention", help="the node's actorinfer.jobs.retention (a HOCON duration, e.g. 1m)")
    parser.add_argument("--samples", help="also append each sample to this file as it is taken (one JSON object a line)")
    args = parser.parse_args()
    node = Node("http.tenant-defaults.max-queued-requests = 100000" + (f"\n  jobs.retention = {args.retention}" if args.retention else ""))
    headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    lock = threading.Lock()
    sent, acknowledged, kinds, failures = set(), {}, {}, []
    # Requests whose answer was checked when it came: a completion's body, a job's results file (every line, none twice).
    checked = set()
    counts = {"completion": 0, "stream": 0, "job": 0, "disconnect": 0, "pressure": 0}
    stop = threading.Event()
    deadline = time.time() + args.minutes * 60

    def post(path, body, key, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout)
        try:
            conn.request("POST", path, body, dict(headers, **{"Idempotency-Key": key}))
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def get(path, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def check_job(key, job_id, line_ids):
        """Waits for the job to finish and reads its results through the node: every line once, in order."""
        give_up = time.time() + 300
        while True:
            status, body = get(f"/v1/jobs/{job_id}")
            if status != 200:
                return f"{key}: GET /v1/jobs/{job_id} {status} {body[:200]!r}"
            if json.loads(body)["state"] in ("completed", "failed", "cancelled"):
                break
            if time.time() > give_up:
                return f"{key}: not finished within 300 s"
            time.sleep(0.2)
        status, body = get(f"/v1/jobs/{job_id}/results")
        if status != 200:
            return f"{key}: results {status} {body[:200]!r}"
        ids = [json.loads(l)["id"] for l in body.decode().splitlines()]
        return None if ids == line_ids else f"{key}: result ids {ids[:5]}... are not the lines sent"

    def client(n):
        rng = random.Random(n)
        i = 0
        while not stop.is_set():
            i += 1
            key = f"soak-{n}-{i}"
            kind = rng.choices(["completion", "stream", "job", "disconnect"], [5, 3, 1, 2])[0]
            prompt = f"Request {n}-{i}: " + " ".join(rng.choice(["red", "dog", "sea", "run", "old", "sky"]) for _ in range(rng.randint(1, 6)))
            request = {"prompt": prompt, "max_tokens": rng.randint(4, 16), "temperature": rng.choice([0, 0.8])}
            with lock:
                sent.add(key)
                kinds[key] = kind
            try:
                if kind == "job":
                    line_ids = [f"{key}-{j}" for j in range(rng.randint(5, 30))]
                    lines = [json.dumps(dict(request, id=i, prompt=f"{prompt} {i}")) for i in line_ids]
                    status, body = post("/v1/jobs", "\n".join(lines), key)
                    if status == 200 and args.retention:
                        problem = check_job(key, json.loads(body)["id"], line_ids)
                        with lock:
                            if problem:
                                failures.append(problem)
                            else:
                                checked.add(key)
                elif kind == "disconnect":
                    try:
                        post("/v1/completions", json.dumps(request), key, timeout=rng.choice([0.01, 0.05, 0.2]))
                    except (OSError, http.client.HTTPException):
                        pass
                    with lock:
                        counts["disconnect"] += 1
                    continue
                else:
                    if kind == "stream":
                        request["stream"] = True
                    status, body = post("/v1/completions", json.dumps(request), key)
                    if kind == "stream" and status == 200:
                        assert body.rstrip().endswith(b"data: [DONE]"), body[-200:]
                        body = next(l for l in body.split(b"\n") if l.startswith(b"data: {"))[6:]
                if status != 200:
                    with lock:
                        failures.append(f"{key}: {status} {body[:200]!r}")
                    continue
                answer = json.loads(body)
                with lock:
                    acknowledged[key] = answer["id"]
                    counts[kind] += 1
                    if kind != "job" and answer.get("choices"):
                        checked.add(key)
            except (OSError, http.client.HTTPException, AssertionError, StopIteration) as e:
                with lock:
                    failures.append(f"{key}: {e!r}")

    def pressure():
        rng = random.Random(99)
        state = json.loads(node.request("GET", "/admin/state")[1])
        tier, needed = state["compute"]["tier"], state["compute"]["largest_block_bytes"]
        while not stop.wait(rng.uniform(3, 8)):
            budget = "clear" if rng.random() < 0.3 else int(needed * rng.uniform(0.25, 1.0))
            status, _ = node.request("POST", "/admin/pressure", {"tier": tier, "budget": budget})
            with lock:
                counts["pressure"] += 1
                if status != 200:
                    failures.append(f"pressure {budget}: {status}")
        node.request("POST", "/admin/pressure", {"tier": tier, "budget": "clear"})

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)] + [threading.Thread(target=pressure)]
    for t in threads:
        t.start()
    started = time.time()
    samples = []

    def gc_mb():
        status, body = node.request("GET", "/metrics")
        figures = {}
        for name in ("heap", "committed", "heap_after_full", "fragmented"):
            m = re.search(rb"^actorinfer_gc_" + name.encode() + rb"_bytes (\S+)$", body, re.M) if status == 200 else None
            figures[f"gc_{name}_mb"] = round(float(m.group(1)) / 2**20, 1) if m else None
        # Each generation after the last collection (what the heap is made of) and collections so far.
        for gen in ("gen0", "gen1", "gen2", "loh", "poh"):
            m = re.search(rb'^actorinfer_gc_generation_bytes\{generation="' + gen.encode() + rb'"\} (\S+)$', body, re.M) if status == 200 else None
            if m:
                figures[f"gc_{gen}_mb"] = round(float(m.group(1)) / 2**20, 1)
        m = re.search(rb'^actorinfer_gc_collections\{generation="gen2"\} (\S+)$', body, re.M) if status == 200 else None
        if m:
            figures["gc_gen2_collections"] = int(float(m.group(1)))
        return figures

    while time.time() < deadline and node.alive():
        samples.append(dict({"t_s": round(time.time() - started), "rss_mb": round(node.rss_bytes() / 2**20, 1), "handles": node.open_handles()},
                            **gc_mb(), **node.memory()))
        if args.samples:
            with open(args.samples, "a") as f:
                f.write(json.dumps(samples[-1]) + "\n")
        time.sleep(10)
    stop.set()
    for t in threads:
        t.join()

    # Everything acknowledged (and everything persisted before its client went away) finishes exactly once.
    def finished():
        jobs, after = [], None
        while True:
            status, body = node.request("GET", "/v1/jobs?limit=100" + (f"&after={after}" if after else ""), timeout=120)
            if status == 400 and after:
                # The page's last job expired meanwhile (it is the oldest): list again from the newest.
                jobs, after = [], None
                continue
            page = json.loads(body)
            jobs += page["data"]
            if not page.get("has_more"):
                break
            after = page["last_id"]
        return jobs, all(j["state"] in ("completed", "failed", "cancelled") for j in jobs)
    settle = time.time() + 300
    jobs, done = finished()
    while not done and time.time() < settle:
        time.sleep(5)
        jobs, done = finished()
    by_id = {j["id"]: j for j in jobs}

    def expected_id(key):
        # The node's id for an Idempotency-Key of tenant "default" (what --api-key names).
        prefix = "job-" if kinds[key] == "job" else "cmpl-"
        return prefix + hashlib.sha256(f"default\n{prefix}\n{key}".encode()).hexdigest()[:32]

    # Not in the store any more: expired after its retention, and checked when it finished (or lost, if not).
    twice, short, expired_during_check = [], [], set()
    # Each job's results file, read from the data folder (what GET /v1/jobs/{id}/results serves).
    for j in jobs:
        try:
            with open(os.path.join(node.data, "results", j["id"] + ".jsonl")) as f:
                lines = f.read().splitlines()
        except OSError:
            if node.request("GET", f"/v1/jobs/{j['id']}")[0] == 404:
                expired_during_check.add(j["id"])
                continue
            lines = []
        ids = [json.loads(l)["id"] for l in lines]
        if len(ids) != len(set(ids)):
            twice.append(j["id"])
        if len(lines) != j["counts"]["total"] or j["counts"]["pending"] != 0:
            short.append(j["id"])
    for i in expired_during_check:
        del by_id[i]
    lost = [k for k, i in acknowledged.items() if i not in by_id and k not in checked]
    sent_ids = {expected_id(k) for k in sent}
    expired_checked = sum(1 for k, i in acknowledged.items() if i not in by_id and k in checked)
    after_minute = [s for s in samples if s["t_s"] >= 60]
    base = after_minute[0]["rss_mb"] if after_minute else None
    print(json.dumps({
        "minutes": args.minutes,
        "clients": args.clients,
        "retention": args.retention,
        "node_alive": node.alive(),
        "sent": len(sent),
        "answered": counts,
        "failures": len(failures),
        "failure_samples": failures[:5],
        "jobs_in_store": len(by_id),
        "all_finished": done,
        "acknowledged_not_in_store_nor_checked": len(lost),
        "acknowledged_expired_after_being_checked": expired_checked,
        "jobs_with_a_line_twice": len(twice),
        "jobs_with_lines_missing": len(short),
        "jobs_with_lines_missing_samples": short[:3],
        "acknowledged_with_another_id": sum(1 for k, i in acknowledged.items() if i != expected_id(k)),
        "store_ids_not_sent": sum(1 for i in by_id if i not in sent_ids),
        "rss_after_first_minute_mb": base,
        "rss_max_after_first_minute_mb": max(s["rss_mb"] for s in after_minute) if after_minute else None,
        "rss_last_mb": samples[-1]["rss_mb"] if samples else None,
        "rss_max_over_base": round(max(s["rss_mb"] for s in after_minute) / base - 1, 4) if base else None,
        "rss_last_over_base": round(samples[-1]["rss_mb"] / base - 1, 4) if base else None,
        "handles_min_max_after_first_minute": [min(s["handles"] for s in after_minute), max(s["handles"] for s in after_minute)] if after_minute else None,
        "samples": samples,
    }, indent=1))
    node.stop()


if __name__ == "__main__":
    main()
