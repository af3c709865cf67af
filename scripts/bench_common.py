"""Helpers shared by the benchmark scripts: a release `stratus serve` on a free port, readiness,
tokens, memory readings."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "stratus")


def build_release():
    subprocess.run(["cargo", "build", "--release", "--bin", "stratus"], cwd=ROOT, check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_baseline(rev):
    """The release binary of an earlier revision, built in a worktree of its own (its own target
    dir under target/, so the current build stays); returns its path."""
    tree = os.path.join(ROOT, "target", "baseline-src")
    subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT,
                   stderr=subprocess.DEVNULL)
    subprocess.run(["git", "worktree", "add", "--detach", "--force", tree, rev], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    target = os.path.join(ROOT, "target", "baseline")
    subprocess.run(["cargo", "build", "--release", "--bin", "stratus"], cwd=tree, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=target))
    return os.path.join(target, "release", "stratus")


def spawn(data_dir, port, *extra, binary=None, env=None):
    """`stratus serve` on `port`; its servers run no guests unless `env` says otherwise (the
    benchmarks of disks and images measure the disk-only path)."""
    env = {**os.environ, "STRATUS_LOG": "warn", "STRATUS_DRIVER": "none", **(env or {})}
    return subprocess.Popen(
        [binary or BIN, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def wait_ready(port, deadline=30.0):
    """Polls GET /identity/v3 until it answers 200; returns seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/identity/v3", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.0005)
    raise RuntimeError("server did not become ready")


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)


def admin_token(port, data_dir, project="admin"):
    password = open(os.path.join(data_dir, "admin-password")).read().strip()
    body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/identity/v3/auth/tokens", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.headers["X-Subject-Token"], json.load(r)["token"]["project"]["id"]


def status_kib(pid, field):
    """A VmRSS/VmHWM reading of /proc/PID/status, in KiB."""
    return int(re.search(rf"{field}:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))


def wrk(url, duration, headers=()):
    """wrk at 2 threads and 64 connections: requests per second and the median latency; any
    failed response is an error."""
    args = ["wrk", "-t2", "-c64", f"-d{duration}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed responses:\n{out}")
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)
    return rps, p50
