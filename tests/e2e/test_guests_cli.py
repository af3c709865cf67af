"""Servers as real QEMU guests, with the real `openstack` CLI: the demo image boots and greets on
the serial console (`openstack console log show`), stop, start and a hard reboot show in the
console, an image of the running server is made without stopping it, and deleting the server
leaves no guest process. The Linux guest of scripts/guest-image boots through its kernel_id /
ramdisk_id properties, shuts down cleanly on stop, and an image made while it writes boots to a
valid prefix of its record stream."""

import os
import subprocess
import time

from conftest import ROOT, Cloud

MARKER = "stratus demo image: booted"
READY = "stratus-guest: ready"


def wait_for(what, check, timeout=120):
    start = time.time()
    while True:
        value = check()
        if value:
            return value
        assert time.time() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.5)


def console(cloud, *args):
    return cloud.openstack("console", "log", "show", *args).stdout


def status(cloud, name):
    return cloud.openstack("server", "show", name, "-f", "json")["status"]


def guest_pids(cloud):
    out = []
    guests = os.path.join(cloud.data_dir, "guests")
    for gid in os.listdir(guests) if os.path.isdir(guests) else []:
        try:
            pid = int(open(os.path.join(guests, gid, "qemu.pid")).read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if gid.encode() in f.read():
                    out.append(pid)
        except (OSError, ValueError):
            pass
    return out


def test_a_guest_boots_greets_and_lives_through_its_actions(qemu_cloud):
    c = qemu_cloud
    assert any("guests: qemu (tcg)" in line for line in c.banner), c.banner
    c.openstack("server", "create", "--image", "stratus-demo", "--flavor", "m1.tiny", "--wait", "g1")
    wait_for("the greeting", lambda: MARKER in console(c, "g1"))
    last = console(c, "--lines", "1", "g1")
    assert len(last.strip().splitlines()) == 1, last
    assert len(guest_pids(c)) == 1

    c.openstack("server", "stop", "g1")
    wait_for("SHUTOFF", lambda: status(c, "g1") == "SHUTOFF")
    wait_for("no guest process", lambda: not guest_pids(c))
    c.openstack("server", "start", "g1")
    wait_for("ACTIVE", lambda: status(c, "g1") == "ACTIVE")
    wait_for("a second boot", lambda: console(c, "g1").count(MARKER) >= 2)
    c.openstack("server", "reboot", "--hard", "--wait", "g1")
    wait_for("a third boot", lambda: console(c, "g1").count(MARKER) >= 3)

    pid = guest_pids(c)
    c.openstack("server", "image", "create", "--wait", "--name", "live", "g1")
    assert c.openstack("image", "show", "live", "-f", "json")["status"] == "active"
    assert status(c, "g1") == "ACTIVE" and guest_pids(c) == pid

    c.openstack("server", "delete", "--wait", "g1")
    wait_for("no guest process", lambda: not guest_pids(c))


def test_a_linux_guest_with_the_real_cli(tmp_path):
    """The Linux guest of scripts/guest-image, uploaded and booted with the real CLI: its ready
    marker in `openstack console log show`; stop (a clean shutdown), start and reboot show in its
    console; an image made while it writes its record stream boots to a valid prefix of it."""
    out = tmp_path / "guest"
    subprocess.run([str(ROOT / "scripts" / "guest-image"), str(out)], check=True)
    c = Cloud("sqlite", STRATUS_DRIVER="qemu", STRATUS_ACCEL="tcg", STRATUS_SHUTDOWN_TIMEOUT="60",
              STRATUS_GUEST_SYNC_INTERVAL="1")
    try:
        kernel = c.openstack("image", "create", "--disk-format", "aki", "--container-format", "aki",
                             "--file", str(out / "vmlinuz"), "linux-kernel", "-f", "json")["id"]
        ramdisk = c.openstack("image", "create", "--disk-format", "ari", "--container-format", "ari",
                              "--file", str(out / "initrd.img"), "linux-initrd", "-f", "json")["id"]
        c.openstack("image", "create", "--disk-format", "qcow2", "--file", str(out / "root.qcow2"),
                    "--property", f"kernel_id={kernel}", "--property", f"ramdisk_id={ramdisk}",
                    "--property", "os_command_line=console=ttyS0 root=/dev/vda rw stratus.writer=1",
                    "linux")
        c.openstack("server", "create", "--image", "linux", "--flavor", "m1.tiny", "--wait", "l1")
        wait_for("the ready marker", lambda: READY in console(c, "l1"))
        wait_for("records", lambda: "wrote 100 records" in console(c, "l1"))

        c.openstack("server", "image", "create", "--wait", "--name", "l1-live", "l1")
        c.openstack("server", "create", "--image", "l1-live", "--flavor", "m1.tiny", "--wait", "l2")
        verdict = wait_for("the copy's verdict", lambda: [
            line for line in console(c, "l2").splitlines() if "stratus-guest: records " in line])
        assert verdict[0].strip().startswith("stratus-guest: records ok "), verdict
        assert int(verdict[0].split()[-1]) >= 100, verdict

        c.openstack("server", "stop", "l1")
        wait_for("SHUTOFF", lambda: status(c, "l1") == "SHUTOFF")
        assert "stratus-guest: shutting down" in console(c, "l1")
        c.openstack("server", "start", "l1")
        wait_for("a second boot", lambda: console(c, "l1").count(READY) >= 2)
        c.openstack("server", "reboot", "--wait", "l1")
        wait_for("a third boot", lambda: console(c, "l1").count(READY) >= 3)
        assert console(c, "l1").count("stratus-guest: shutting down") == 2

        c.openstack("server", "delete", "--wait", "l1", "l2")
        wait_for("no guest process", lambda: not guest_pids(c))
    finally:
        assert c.stop() == 0, "server did not exit cleanly on SIGTERM"
