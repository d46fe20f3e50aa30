#!/usr/bin/env python3
"""Holds many idle TCP connections without a key open against a node (127.0.0.1 only) while a client with a key
completes requests, and reports the keyed client's latencies, the node's file handles against its limit, and how
many of the idle connections the node kept.

  python3 scripts/probe/flood.py [--connections 20000] [--seconds 60]

Connections the node closes (over its connection limit, or idle past its keep-alive timeout) are opened again once a
second, so the pressure lasts the whole time. Every few seconds a fresh keyed connection is tried too."""
import argparse
import errno
import http.client
import json
import multiprocessing
import resource
import selectors
import socket
import threading
import time

from node import KEY, Node

BODY = json.dumps({"prompt": "Hello, my dog is", "max_tokens": 8, "temperature": 0})


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else None


def hold(port, connections, seconds, results):
    """Holds `connections` idle sockets to the node for `seconds`, opening again once a second those it closed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    opened = {"count": 0, "failed": 0, "closed_by_node": 0}
    samples = []
    started = time.time()
    while time.time() - started < seconds:
        # A readable idle socket is one the node closed (it never sends on its own).
        for key, _ in sel.select(timeout=0):
            sel.unregister(key.fileobj)
            key.fileobj.close()
            opened["closed_by_node"] += 1
        for _ in range(connections - len(sel.get_map())):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                opened["failed"] += 1
                continue
            sel.register(s, selectors.EVENT_READ)
            opened["count"] += 1
        samples.append(len(sel.get_map()))
        time.sleep(1)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    opened["held_min_after_10s"] = min(samples[10:]) if len(samples) > 10 else None
    results.put(opened)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    node = Node()
    try:
        keyed = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
        headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
        keyed.request("POST", "/v1/completions", BODY, headers)
        keyed.getresponse().read()
        latencies, errors, fresh = [], [], {"tried": 0, "served": 0}
        stop = threading.Event()

        def client():
            nonlocal keyed
            last_fresh = time.time()
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    keyed.request("POST", "/v1/completions", BODY, headers)
                    r = keyed.getresponse()
                    r.read()
                    if r.status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors.append(f"status {r.status}")
                except (OSError, http.client.HTTPException) as e:
                    errors.append(repr(e))
                    keyed = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
                if time.time() - last_fresh > 5:
                    last_fresh = time.time()
                    fresh["tried"] += 1
                    try:
                        c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
                        c.request("POST", "/v1/completions", BODY, headers)
                        if c.getresponse().status == 200:
                            fresh["served"] += 1
                        c.close()
                    except (OSError, http.client.HTTPException):
                        pass

        # One process per 10,000 connections: a process may not hold more handles than its hard limit.
        cap = max(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 1024)
        processes = -(-args.connections // cap)
        shares = [args.connections // processes + (1 if i < args.connections % processes else 0) for i in range(processes)]
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        workers = [ctx.Process(target=hold, args=(node.port, n, args.seconds, results)) for n in shares]
        thread = threading.Thread(target=client)
        thread.start()
        for w in workers:
            w.start()
        flood_start = time.time()
        handles = []
        while time.time() - flood_start < args.seconds:
            if node.alive():
                handles.append(node.open_handles())
            time.sleep(1)
        reports = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join()
        opened = {k: sum(r[k] for r in reports) for k in ("count", "failed", "closed_by_node")}
        held_min = sum(r["held_min_after_10s"] or 0 for r in reports)
        stop.set()
        thread.join()
        print(json.dumps({
            "connections_wanted": args.connections,
            "seconds": args.seconds,
            "node_alive": node.alive(),
            "node_handle_limit": node.handle_limit(),
            "node_open_handles_max": max(handles) if handles else None,
            "node_open_handles_last": handles[-1] if handles else None,
            "flood_processes": len(workers),
            "idle_open_client_side_min_after_10s": held_min,
            "idle_opened_total": opened["count"],
            "idle_closed_by_node": opened["closed_by_node"],
            "idle_connect_failures": opened["failed"],
            "keyed_requests": len(latencies),
            "keyed_errors": len(errors),
            "keyed_error_samples": errors[:3],
            "keyed_p50_s": round(percentile(latencies, 50), 4) if latencies else None,
            "keyed_p99_s": round(percentile(latencies, 99), 4) if latencies else None,
            "keyed_max_s": round(max(latencies), 4) if latencies else None,
            "fresh_keyed_connections_tried": fresh["tried"],
            "fresh_keyed_connections_served": fresh["served"],
            "node_log_lines": len(node.lines),
            "node_warning_lines": sum(1 for l in node.lines if "warn" in l.lower() or "error" in l.lower()),
            "node_warning_samples": [l.strip()[:300] for l in node.lines if "warn" in l.lower() or "error" in l.lower()][:4],
            "connection_limit_line": next((l.strip() for l in node.lines if "connections" in l and "at most" in l), None),
        }, indent=2))
    finally:
        node.stop()


if __name__ == "__main__":
    main()
