"""A node of the bundled model on 127.0.0.1 (a free port, a fresh data folder), for the probes in this folder.

Started through scripts/actorinfer, which execs the CLI, so the process id is the node's own."""
import atexit
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "sk-probe"


class Node:
    def __init__(self, extra_conf=""):
        self.dir = tempfile.mkdtemp(prefix="actorinfer-probe-")
        self.data = os.path.join(self.dir, "data")
        conf = os.path.join(self.dir, "node.conf")
        with open(conf, "w") as f:
            f.write('actorinfer {\n  model = "models/opt-tiny"\n  memory.telemetry-interval = 2s\n' + extra_conf + "\n}\n")
        self.log_path = os.path.join(self.dir, "node.log")
        self.log = open(self.log_path, "w")
        # The node goes with the probe, however the probe ends (an exception, a closed pipe).
        atexit.register(self.stop)
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "scripts", "actorinfer"), "node", "--config", conf, "--data-dir", self.data,
             "--host", "127.0.0.1", "--port", "0", "--api-key", KEY],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.url = None
        deadline = time.time() + 600
        while self.url is None:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the node exited before listening:\n" + "".join(self.lines))
            self.lines.append(line)
            self.log.write(line)
            m = re.search(r"http: listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
            if time.time() > deadline:
                raise RuntimeError("the node did not listen in time")
        self.port = int(self.url.rsplit(":", 1)[1])
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            self.log.write(line)
            self.log.flush()

    def alive(self):
        return self.proc.poll() is None

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return None

    def memory(self):
        """Resident memory by kind (/proc/PID/status, MB) and the thread count: anonymous (heaps, managed and native),
        file-backed (mapped libraries) and shared."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem"):
                    fields[key] = round(int(value.split()[0]) / 1024, 1)
                elif key == "Threads":
                    fields[key] = int(value)
        return {"anon_mb": fields.get("RssAnon"), "file_mb": fields.get("RssFile"), "shmem_mb": fields.get("RssShmem"),
                "threads": fields.get("Threads")}

    def open_handles(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def handle_limit(self):
        with open(f"/proc/{self.proc.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
        return None

    def request(self, method, path, body=None, key=KEY, timeout=60, headers=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if key:
            req.add_header("Authorization", "Bearer " + key)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def folder_bytes(self, sub):
        path = os.path.join(self.data, sub)
        total = 0
        for dirpath, _, files in os.walk(path):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, name))
                except OSError:
                    pass
        return total

    def stop(self):
        if self.log.closed:
            return
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
