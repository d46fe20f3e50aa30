#!/usr/bin/env python3
"""Measures what a 64 MiB job body of invalid lines costs a node (loopback only): the time to the answer, the node's
resident memory before and at its peak during the request, and the sizes of its persistence and results folders.

  python3 scripts/probe/bad_job.py [--mib 64]"""
import argparse
import http.client
import json
import threading
import time

from node import KEY, Node


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    node = Node()
    try:
        # Settle: the job store has recovered and answers; the first requests warm the routes.
        for _ in range(3):
            node.request("GET", "/v1/jobs")
            node.request("POST", "/v1/completions", {"prompt": "warm", "max_tokens": 2})
        time.sleep(2)
        before = {"rss": node.rss_bytes(), "persistence": node.folder_bytes("persistence"), "results": node.folder_bytes("results")}
        body = b"x\n" * (args.mib * 1024 * 1024 // 2)
        peak = [before["rss"]]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], node.rss_bytes())
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=120)
        started = time.perf_counter()
        conn.request("POST", "/v1/jobs", body=body, headers={"Authorization": "Bearer " + KEY, "Content-Length": str(len(body))})
        response = conn.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - started
        time.sleep(1)
        done.set()
        sampler.join()
        after = {"rss": node.rss_bytes(), "persistence": node.folder_bytes("persistence"), "results": node.folder_bytes("results")}
        error = json.loads(answer).get("error", {})
        print(json.dumps({
            "body_bytes": len(body),
            "status": response.status,
            "code": error.get("code"),
            "message": (error.get("message") or "")[:200],
            "seconds_to_answer": round(elapsed, 3),
            "rss_before_mb": round(before["rss"] / 2**20, 1),
            "rss_peak_mb": round(peak[0] / 2**20, 1),
            "rss_growth_peak_mb": round((peak[0] - before["rss"]) / 2**20, 1),
            "rss_after_mb": round(after["rss"] / 2**20, 1),
            "persistence_bytes": [before["persistence"], after["persistence"]],
            "results_bytes": [before["results"], after["results"]],
            "jobs_listed_after": len(json.loads(node.request("GET", "/v1/jobs")[1])["data"]),
            "node_alive": node.alive(),
        }, indent=2))
    finally:
        node.stop()


if __name__ == "__main__":
    main()
