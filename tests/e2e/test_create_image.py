"""createImage of an image-backed server with the real clients: `openstack server image create
--wait` and openstacksdk `create_server_image(wait=True)`; data written into the server's disk
with qemu-io is in the image, and a new server boots from it."""

import json
import os
import subprocess
import sys

import pytest


def disks(cloud, server_id):
    return subprocess.run([os.environ.get("STRATUS_BIN", "stratus"), "server", "disks", server_id,
                           "--data-dir", cloud.data_dir] + cloud.store_args(),
                          check=True, capture_output=True, text=True).stdout.split()


def test_server_image_create_with_the_cli(cloud, tmp_path):
    s1 = cloud.openstack("server", "create", "--image", "stratus-demo", "--flavor", "m1.tiny", "--wait",
                         "s1", "-f", "json")
    disk = disks(cloud, s1["id"])[0]
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", disk], check=True,
                   capture_output=True)

    img = cloud.openstack("server", "image", "create", "--name", "i1", "--wait", "s1", "-f", "json")
    assert img["status"] == "active", img
    assert img["disk_format"] == "qcow2"
    out = tmp_path / "i1.qcow2"
    cloud.openstack("image", "save", "--file", str(out), "i1")
    subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", str(out), disk], check=True,
                   capture_output=True)

    s2 = cloud.openstack("server", "create", "--image", "i1", "--flavor", "m1.tiny", "--wait", "s2",
                         "-f", "json")
    assert s2["status"] == "ACTIVE"
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 0 1M", disks(cloud, s2["id"])[0]],
                   check=True, capture_output=True)


SDK_SCRIPT = """
import json, sys
import openstack
conn = openstack.connect(cloud="stratus-admin")
server = conn.compute.find_server(sys.argv[1])
image = conn.compute.create_server_image(server, "sdk-image", wait=True, timeout=120)
image = conn.image.get_image(image.id)
print(json.dumps({"id": image.id, "status": image.status, "instance_uuid": image.instance_uuid}))
"""


def test_create_server_image_with_the_sdk(cloud):
    s1 = cloud.openstack("server", "create", "--image", "stratus-demo", "--flavor", "m1.tiny", "--wait",
                         "s1", "-f", "json")
    r = subprocess.run([sys.executable, "-c", SDK_SCRIPT, "s1"], capture_output=True, text=True,
                       env=cloud.env(), timeout=180)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["status"] == "active" and got["instance_uuid"] == s1["id"], got


def test_server_image_create_of_a_volume_backed_server(cloud):
    cloud.openstack("volume", "create", "--image", "stratus-demo", "--size", "1", "--bootable", "boot1",
                    "-f", "json")
    s2 = cloud.openstack("server", "create", "--volume", "boot1", "--flavor", "m1.tiny", "--wait", "s2",
                         "-f", "json")
    img = cloud.openstack("server", "image", "create", "--name", "i2", "--wait", "s2", "-f", "json")
    assert img["status"] == "active", img
    snaps = cloud.openstack("volume", "snapshot", "list", "-f", "json")
    assert [s["Name"] for s in snaps] == ["snapshot for i2"]
    s3 = cloud.openstack("server", "create", "--image", "i2", "--flavor", "m1.tiny", "--wait", "s3",
                         "-f", "json")
    assert s3["status"] == "ACTIVE", s3
    assert s2["id"] != s3["id"]
