"""The cluster's overhead on this machine: one seeded job through a node alone and through a gateway with one worker.

Starts (a) a node alone (both roles) and (b) `scripts/cluster-up --workers 1` (a gateway and one worker, each its own
process), both with the same model, device and block bounds and their journals on the same backend (`--journal`:
PostgreSQL, each side in a database of its own on the project's server, or SQLite in each one's data folder), then runs the same
job on each, interleaved (a, b, b, a, a, b, ...: neither always goes first), and prints each run, the medians and their
ratio (cluster / node). Throughput is generated tokens over the time from the POST of the job to its completion, as the
GPU scripts measure it. Both must give the same tokens for every line (greedy).

  python3 scripts/probe/cluster-overhead.py [--requests 1000] [--reps 7] [--warm-up 3] [--prompt-len 24] [--gen-len 16]
      [--mixed] [--journal postgresql|sqlite] [--json FILE]

The model is models/opt-tiny (64 positions: prompt + generation must stay within them) unless --model names another.
"""
import argparse
import glob
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "sk-probe"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, path, data=None, timeout=60):
    req = urllib.request.Request(url + path, data=data, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def wait_ready(url, proc, what, seconds=600):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            call(url, "/readyz", timeout=5)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not serve within {seconds} s")


def psql(connection, sql):
    """Runs one statement on the server of an Npgsql connection string, in its maintenance database."""
    parts = dict(kv.split("=", 1) for kv in connection.split(";") if "=" in kv)
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), key=lambda b: int(b.split("/")[4]))
    subprocess.run([bins[-1] if bins else "psql", "-h", parts["Host"], "-p", parts["Port"], "-U", parts["Username"], "-d", "postgres",
                    "-qc", sql], check=True, env=dict(os.environ, PGPASSWORD=parts["Password"]), stdout=subprocess.DEVNULL)


def job_body(n, prompt_len, gen_len, vocab, seed=2112, mixed=False):
    """n greedy requests of random token ids; mixed: prompts of 4 to prompt_len tokens, 1 to gen_len new ones."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        length, tokens = (rng.randint(4, prompt_len), rng.randint(1, gen_len)) if mixed else (prompt_len, gen_len)
        prompt = [2] + [rng.randrange(10, vocab) for _ in range(length - 1)]
        lines.append(json.dumps({"id": f"r{i}", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}))
    return ("\n".join(lines) + "\n").encode()


def cpu_seconds(pids):
    """User + system CPU seconds the processes (and their waited-for children) have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick
        except OSError:
            pass
    return total


def postgres_pids():
    """The project's PostgreSQL server: its postmaster and the backends it forked."""
    try:
        with open(os.path.join(ROOT, "data", "postgres", "cluster", "postmaster.pid")) as f:
            master = int(f.readline())
    except (OSError, ValueError):
        return []
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def run_job(url, body, pids=lambda: []):
    """Posts the job, waits for it; returns (seconds, tokens, {id: output_ids}, CPU seconds of the processes)."""
    before = {k: cpu_seconds(v) for k, v in pids().items()} if pids() else {}
    start = time.perf_counter()
    job = json.loads(call(url, "/v1/jobs", body))["id"]
    while True:
        state = json.loads(call(url, f"/v1/jobs/{job}"))["state"]
        if state in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if state != "completed":
        raise RuntimeError(f"job {job} on {url} ended {state}")
    outputs = {}
    for line in call(url, f"/v1/jobs/{job}/results").decode().splitlines():
        if line.strip():
            r = json.loads(line)
            if "output_ids" not in r:
                raise RuntimeError(f"an error line on {url}: {line}")
            outputs[r["id"]] = r["output_ids"]
    cpu = {k: cpu_seconds(v) - before.get(k, 0) for k, v in pids().items()} if before else {}
    return seconds, sum(len(o) for o in outputs.values()), outputs, cpu


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/opt-tiny")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--prompt-len", type=int, default=24)
    p.add_argument("--gen-len", type=int, default=16)
    p.add_argument("--mixed", action="store_true", help="prompts of 4 to --prompt-len tokens and 1 to --gen-len new ones")
    p.add_argument("--warm-up", type=int, default=3, help="jobs each side runs before the measured ones (the runtime's tiered JIT settles)")
    p.add_argument("--journal", choices=["postgresql", "sqlite"], default="postgresql",
                   help="both sides' journals: PostgreSQL (a database each on the project's server) or SQLite")
    p.add_argument("--json", help="also write every run and the summary here")
    args = p.parse_args()

    model = os.path.join(ROOT, args.model) if os.path.isdir(os.path.join(ROOT, args.model)) else args.model
    vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"] if os.path.isdir(model) else 50000
    work = tempfile.mkdtemp(prefix="cluster-overhead-")
    node_port, gateway_port = free_port(), free_port()
    node_url, cluster_url = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{gateway_port}"
    env = dict(os.environ, ACTORINFER_CLUSTER_DIR=os.path.join(work, "cluster"))
    procs = []
    # On PostgreSQL each side's journal is a database of its own on the project's server (a node recovers every job of
    # its schema: earlier runs' jobs would run again, and a second node on one schema is refused).
    postgres = args.journal == "postgresql"
    started_postgres = postgres and not os.path.exists(os.path.join(ROOT, "data", "postgres", "cluster", "postmaster.pid"))
    node_env = dict(os.environ)
    if postgres:
        server = subprocess.run([os.path.join(ROOT, "scripts", "postgres-up")], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
        database = "probe_" + os.path.basename(work).replace("-", "_").lower()
        for side, side_env in (("cluster", env), ("node", node_env)):
            psql(server, f"CREATE DATABASE {database}_{side}")
            side_env["ACTORINFER_POSTGRES_CONNECTION"] = server.replace("Database=actorinfer", f"Database={database}_{side}")
    try:
        # The node alone: the worker's file (device, dtype, block bounds) with both roles, HTTP and SQLite.
        # ACTORINFER_CLI (as cluster-up reads it) runs another build of the program on both sides, e.g. an earlier commit's.
        cli = os.environ.get("ACTORINFER_CLI", "").split() or [os.path.join(ROOT, "scripts", "actorinfer")]
        subprocess.run(cli + ["--version"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        conf = os.path.join(work, "node.conf")
        with open(os.path.join(ROOT, "hocon", "cluster-worker.conf")) as f:
            worker_conf = f.read()
        with open(conf, "w") as f:
            f.write(worker_conf + f'\nactorinfer {{\n  roles = [gateway, worker]\n  model = "{model}"\n  http.enabled = on\n'
                    f'  persistence.provider = "{args.journal}"\n  cluster.enabled = off\n}}\n')
        log = open(os.path.join(work, "node.log"), "w")
        node = subprocess.Popen(cli + ["node", "--config", conf, "--data-dir", os.path.join(work, "node"),
                                 "--host", "127.0.0.1", "--port", str(node_port), "--api-key", KEY],
                                cwd=ROOT, env=node_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(node)
        wait_ready(node_url, node, "the node")
        print(f"node alone on {node_url} (log {work}/node.log)", flush=True)
        subprocess.run([os.path.join(ROOT, "scripts", "cluster-up"), "--workers", "1", "--model", model, "--port", str(gateway_port),
                        "--api-key", KEY, "--journal", args.journal], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"gateway + 1 worker on {cluster_url} (logs in {work}/cluster)", flush=True)

        cluster_dir = env["ACTORINFER_CLUSTER_DIR"]
        pid_of = lambda name: int(open(os.path.join(cluster_dir, name + ".pid")).read())
        watched = {"node": lambda: {"node": [node.pid]},
                   "cluster": lambda: {"gateway": [pid_of("gateway")], "worker": [pid_of("worker-1")], "postgres": postgres_pids()}}
        if postgres:
            watched["node"] = lambda: {"node": [node.pid], "postgres": postgres_pids()}
        else:
            watched["cluster"] = lambda: {"gateway": [pid_of("gateway")], "worker": [pid_of("worker-1")]}
        body = job_body(args.requests, args.prompt_len, args.gen_len, vocab, mixed=args.mixed)
        warm = job_body(args.requests, args.prompt_len, args.gen_len, vocab, seed=7, mixed=args.mixed)
        for _ in range(args.warm_up):
            for url in (node_url, cluster_url):
                run_job(url, warm)
        runs = {"node": [], "cluster": []}
        reference = None
        for rep in range(args.reps):
            order = [("node", node_url), ("cluster", cluster_url)]
            if rep % 2 == 1:
                order.reverse()
            for name, url in order:
                seconds, tokens, outputs, cpu = run_job(url, body, watched[name])
                if reference is None:
                    reference = outputs
                elif outputs != reference:
                    differ = sum(outputs.get(k) != v for k, v in reference.items())
                    raise RuntimeError(f"{name} run {rep + 1}: {differ} of {len(reference)} lines differ from the first run's tokens")
                runs[name].append({"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds, "cpu_seconds": cpu})
                print(f"rep {rep + 1} {name:7s}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} token/s; CPU s "
                      + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()), flush=True)
        med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()}
        paired = [c["tokens_per_s"] / n["tokens_per_s"] for n, c in zip(runs["node"], runs["cluster"])]
        summary = {"model": args.model, "requests": args.requests, "prompt_len": args.prompt_len, "gen_len": args.gen_len, "mixed": args.mixed, "journal": args.journal,
                   "reps": args.reps, "node_median_tokens_per_s": med["node"], "cluster_median_tokens_per_s": med["cluster"],
                   "ratio_of_medians": med["cluster"] / med["node"], "median_paired_ratio": statistics.median(paired),
                   "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                   "median_cpu_seconds": {name: {k: statistics.median(r["cpu_seconds"][k] for r in v) for k in v[0]["cpu_seconds"]}
                                          for name, v in runs.items()}}
        print(f"node alone: median {med['node']:.0f} token/s; gateway + 1 worker: median {med['cluster']:.0f} token/s; "
              f"ratio of medians {summary['ratio_of_medians']:.3f}; median of paired ratios {summary['median_paired_ratio']:.3f} "
              f"(load average {summary['load_average'][0]:.1f} on {os.cpu_count()} cores)")
        print("median CPU seconds per job: " + "; ".join(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in c.items())
                                                         for name, c in summary["median_cpu_seconds"].items()))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"summary": summary, "runs": runs}, f, indent=1)
    finally:
        subprocess.run([os.path.join(ROOT, "scripts", "cluster-down")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if postgres:
            for side in ("cluster", "node"):
                psql(server, f"DROP DATABASE IF EXISTS {database}_{side}")
        if started_postgres:
            subprocess.run([os.path.join(ROOT, "scripts", "postgres-down")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
