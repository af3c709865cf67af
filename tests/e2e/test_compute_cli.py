"""Servers through the real `openstack` CLI: create from the demo image with --wait, show, list,
stop/start, delete --wait; the root disk is a real qcow2 file the operator command names."""

import json
import os
import subprocess


def test_server_lifecycle(cloud):
    flavors = {f["Name"] for f in cloud.openstack("flavor", "list", "-f", "json")}
    assert "m1.tiny" in flavors, flavors

    s1 = cloud.openstack("server", "create", "--image", "stratus-demo", "--flavor", "m1.tiny", "--wait",
                         "s1", "-f", "json")
    assert s1["status"] == "ACTIVE", s1
    assert s1["adminPass"]

    shown = cloud.openstack("server", "show", "s1", "-f", "json")
    assert shown["id"] == s1["id"] and shown["status"] == "ACTIVE"
    assert shown["OS-EXT-STS:power_state"] in ("Running", 1), shown
    listed = cloud.openstack("server", "list", "-f", "json")
    assert [(s["Name"], s["Status"]) for s in listed] == [("s1", "ACTIVE")]

    disks = subprocess.run([os.environ.get("STRATUS_BIN", "stratus"), "server", "disks", s1["id"],
                            "--data-dir", cloud.data_dir] + cloud.store_args(),
                           check=True, capture_output=True, text=True).stdout.split()
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-f", "qcow2", disks[0]],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["virtual-size"] == 1 << 30

    cloud.openstack("server", "stop", "s1")
    assert cloud.openstack("server", "show", "s1", "-f", "json")["status"] == "SHUTOFF"
    r = cloud.openstack("server", "stop", "s1", check=False)
    assert r.returncode != 0 and "409" in r.stderr, r.stderr
    cloud.openstack("server", "start", "s1")
    assert cloud.openstack("server", "show", "s1", "-f", "json")["status"] == "ACTIVE"

    cloud.openstack("server", "delete", "--wait", "s1")
    assert cloud.openstack("server", "list", "-f", "json") == []
    assert not os.path.exists(disks[0])
