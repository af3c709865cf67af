"""End-to-end fixtures: a real `stratus serve` process on a random port, driven by the real
OpenStack clients, on SQLite and (when STRATUS_TEST_DATABASE_URL is set) PostgreSQL."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("STRATUS_BIN", str(ROOT / "target" / "debug" / "stratus"))
OPENSTACK = str(pathlib.Path(sys.executable).parent / "openstack")


def _psql(base_url, sql):
    subprocess.run(["psql", base_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


class Cloud:
    def __init__(self, backend, **env_extra):
        self.backend = backend
        self.tmp = tempfile.mkdtemp(prefix="stratus-e2e-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.db_name = None
        self.database_url = None
        args = [BIN, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0"]
        if backend == "postgres":
            base = os.environ["STRATUS_TEST_DATABASE_URL"]
            self.pg_base = base
            self.db_name = "stratus_e2e_" + uuid.uuid4().hex
            _psql(base, f"CREATE DATABASE {self.db_name}")
            self.database_url = base.rsplit("/", 1)[0] + "/" + self.db_name
            args += ["--database-url", self.database_url]
        # No guests unless a test asks for them (`qemu_cloud`).
        env = dict(os.environ, STRATUS_LOG="warn", STRATUS_DRIVER="none")
        env.update(env_extra)
        self.log = open(os.path.join(self.tmp, "server.log"), "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.url = None
        self.banner = []
        for line in self.proc.stdout:
            self.banner.append(line.rstrip())
            m = re.match(r"stratus \S+ listening on (\S+)", line)
            if m:
                self.url = m.group(1)
            if line.strip().startswith("try:"):
                break
        assert self.url, f"server did not start: {self.banner}"
        self.clouds_yaml = os.path.join(self.data_dir, "clouds.yaml")

    def store_args(self):
        """Arguments naming this cloud's metadata store, for operator commands."""
        return ["--database-url", self.database_url] if self.database_url else []

    def env(self, **extra):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("OS_"):
                del env[k]
        env.update(OS_CLIENT_CONFIG_FILE=self.clouds_yaml, OS_CLOUD="stratus-admin")
        env.update(extra)
        return env

    def openstack(self, *args, check=True, env=None):
        """Runs the real `openstack` CLI; returns parsed JSON when `-f json` is among args."""
        r = subprocess.run([OPENSTACK, *args], capture_output=True, text=True, env=env or self.env(),
                           timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"openstack {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
        if "json" in args and r.returncode == 0:
            return json.loads(r.stdout)
        return r

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log.close()
        kill_guests(os.path.join(self.data_dir, "guests"))
        if self.db_name:
            _psql(self.pg_base, f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return code


def kill_guests(guests_dir):
    """Guests outlive their server by design; a test's do not outlive the test."""
    if not os.path.isdir(guests_dir):
        return
    for gid in os.listdir(guests_dir):
        try:
            pid = int(open(os.path.join(guests_dir, gid, "qemu.pid")).read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if gid.encode() in f.read():
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


def backends():
    out = ["sqlite"]
    if os.environ.get("STRATUS_TEST_DATABASE_URL"):
        out.append("postgres")
    return out


@pytest.fixture
def qemu_cloud():
    """A cloud whose servers are real QEMU guests (TCG), stopped hard after 1 s of ACPI."""
    c = Cloud("sqlite", STRATUS_DRIVER="qemu", STRATUS_ACCEL="tcg", STRATUS_SHUTDOWN_TIMEOUT="1",
              STRATUS_GUEST_SYNC_INTERVAL="1")
    yield c
    assert c.stop() == 0, "server did not exit cleanly on SIGTERM"


@pytest.fixture(params=backends())
def cloud(request):
    c = Cloud(request.param)
    yield c
    assert c.stop() == 0, "server did not exit cleanly on SIGTERM"
