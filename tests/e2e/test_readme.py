"""The README, literally: a fresh clone, the run command exactly as written (so the data dir is the
default, relative `./stratus-data`), then every line of the README's "Using the cloud" block run
as written, in that directory, with the real `openstack` CLI on the PATH.

Only the build cache is shared (`CARGO_TARGET_DIR`), so the clone does not compile from scratch.
"""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, kill_guests

README = (ROOT / "README.md").read_text()
PORT = 8080  # the README's default listen address


def sh_blocks(text):
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def run_command():
    cmds = [b.strip() for b in sh_blocks(README) if b.strip().endswith("-- serve")]
    assert cmds == ["cargo run --release -- serve"], cmds
    return cmds[0]


def usage_block():
    blocks = [b for b in sh_blocks(README) if b.startswith("export OS_CLIENT_CONFIG_FILE")]
    assert len(blocks) == 1, "the README has one block of first steps"
    return blocks[0]


@pytest.fixture
def fresh_clone():
    tmp = tempfile.mkdtemp(prefix="stratus-readme-")
    clone = pathlib.Path(tmp) / "stratus"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # The working tree as it is now (a clone has the last commit only): what a newcomer would get
    # once it is committed.
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    for f in filter(None, files):
        src, dst = ROOT / f.decode(), clone / f.decode()
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.exists():
            dst.unlink()
    yield clone
    subprocess.run(["rm", "-rf", tmp], check=False)


def test_readme_first_steps_as_written(fresh_clone):
    env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")),
               STRATUS_LOG="warn")
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{env['PATH']}"
    for k in list(env):
        if k.startswith(("OS_", "STRATUS_")) and k != "STRATUS_LOG":
            del env[k]
    for port in range(PORT, PORT + 5):  # the main one and Huawei's four
        port_free(port)
    log = open(fresh_clone / "server.log", "w")
    server = subprocess.Popen(["bash", "-c", run_command()], cwd=fresh_clone, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    try:
        banner = []
        for line in server.stdout:
            banner.append(line.rstrip())
            if line.strip().startswith("try:"):
                break
        assert banner and banner[0] == f"stratus 0.1.0 listening on http://127.0.0.1:{PORT}", banner
        data_dir = fresh_clone / "stratus-data"
        assert f"  data dir: {data_dir}" in banner, banner
        assert (data_dir / "clouds.yaml").exists()
        huawei = ", ".join(f"{name} http://127.0.0.1:{PORT + k}"
                           for k, name in enumerate(["iam", "ecs", "ims", "evs"], 1))
        assert f"  huawei cloud endpoints: {huawei}" in banner, banner

        script = "set -euo pipefail -x\n" + usage_block()
        r = subprocess.run(["bash", "-c", script], cwd=fresh_clone, env=env, text=True,
                           capture_output=True, timeout=900)
        assert r.returncode == 0, f"README steps failed:\n{r.stderr[-6000:]}"

        osenv = dict(env, OS_CLIENT_CONFIG_FILE=str(data_dir / "clouds.yaml"), OS_CLOUD="stratus-admin")
        show = lambda *a: subprocess.run(["openstack", *a, "-f", "value"], env=osenv, text=True,
                                         capture_output=True, check=True).stdout.split()
        # The steps' servers really got their disks: nothing went to ERROR on the way.
        assert show("server", "show", "s1", "-c", "status") == ["SHUTOFF"]
        assert show("server", "show", "s2", "-c", "status") == ["ACTIVE"]
        assert show("image", "show", "i1", "-c", "status") == ["active"]
        disks = [l for l in r.stdout.splitlines() if l.startswith(str(data_dir))]
        assert disks and all(os.path.exists(d) for d in disks), r.stdout
        info = subprocess.run(["qemu-img", "info", "-f", "qcow2", "--backing-chain", disks[0]],
                              check=True, capture_output=True, text=True).stdout
        assert "backing file: /" in info, info  # backing files are named absolutely
        # The default cloud runs real guests where QEMU is installed (scripts/test installs it):
        # the running server's guest greets on its console.
        guests = [l for l in banner if l.startswith("  guests: ")]
        assert guests and guests[0].startswith("  guests: qemu ("), banner
        for _ in range(120):
            out = subprocess.run(["openstack", "console", "log", "show", "s2"], env=osenv, text=True,
                                 capture_output=True, check=True).stdout
            if "stratus demo image: booted" in out:
                break
            time.sleep(0.5)
        assert "stratus demo image: booted" in out, out
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in the user's terminal
        assert server.wait(timeout=60) == 0, "the server did not stop cleanly"
        log.close()
        # Guests outlive the server by design; the test's do not outlive the test.
        kill_guests(os.path.join(fresh_clone, "stratus-data", "guests"))


def port_free(port):
    """Fails clearly if the README's port is taken (its run command cannot work then)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError as e:
        pytest.fail(f"port {port} of the README's run command is in use: {e}")
    finally:
        s.close()
