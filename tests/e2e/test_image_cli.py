"""Images through the real `openstack` CLI: create from a file, list, show, set, save, delete;
the saved file is byte for byte the uploaded one and the digests are md5sum's and sha512sum's."""

import hashlib
import os
import subprocess
import time

DEMO_IMAGE_ID = "1f3a7b52-6c0e-4d8a-9b1e-5d2c3a4f6e70"


def test_image_lifecycle(cloud, tmp_path):
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "32M"], check=True, capture_output=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 2M", str(disk)], check=True,
                   capture_output=True)
    data = disk.read_bytes()

    img = cloud.openstack("image", "create", "--disk-format", "qcow2", "--container-format", "bare",
                          "--file", str(disk), "img", "-f", "json")
    assert img["status"] == "active"
    assert img["size"] == len(data)
    assert img["virtual_size"] == 32 << 20
    assert img["checksum"] == hashlib.md5(data).hexdigest()
    assert img["properties"]["os_hash_value"] == hashlib.sha512(data).hexdigest()

    listed = cloud.openstack("image", "list", "-f", "json")
    assert [i["Name"] for i in listed] == ["img", "stratus-demo"]

    cloud.openstack("image", "set", "--property", "k=v", "--tag", "t", "img")
    shown = cloud.openstack("image", "show", "img", "-f", "json")
    assert shown["properties"]["k"] == "v" and shown["tags"] == ["t"]

    out = tmp_path / "out.qcow2"
    cloud.openstack("image", "save", "--file", str(out), "img")
    assert out.read_bytes() == data

    cloud.openstack("image", "delete", "img")
    assert [i["Name"] for i in cloud.openstack("image", "list", "-f", "json")] == ["stratus-demo"]
    assert os.listdir(os.path.join(cloud.data_dir, "images")) == [DEMO_IMAGE_ID]


def test_visibility_and_list_permission(cloud):
    cloud.openstack("image", "create", "--private", "priv", "-f", "json")
    cloud.openstack("image", "create", "--public", "pub", "-f", "json")
    cloud.openstack("user", "create", "--password", "pw", "reader", "-f", "json")
    cloud.openstack("group", "create", "readers", "-f", "json")
    cloud.openstack("group", "add", "user", "readers", "reader")
    env = cloud.env(OS_AUTH_URL=cloud.url + "/identity", OS_USERNAME="reader", OS_PASSWORD="pw",
                    OS_PROJECT_NAME="demo", OS_USER_DOMAIN_NAME="Default",
                    OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3")
    del env["OS_CLOUD"]

    # No grant on the project: no token for it (Keystone's 401).
    r = cloud.openstack("image", "list", check=False, env=env)
    assert r.returncode != 0 and "HTTP 401" in r.stderr, r.stderr
    # A policy on the project without the action: listing is refused, naming the action.
    cloud.openstack("role", "add", "--group", "readers", "--project", "demo", "system_all_evs_readonly")
    r = cloud.openstack("image", "list", check=False, env=env)
    assert r.returncode != 0 and "ims:images:list" in r.stderr, r.stderr

    cloud.openstack("role", "add", "--group", "readers", "--project", "demo", "system_all_ims_readonly")
    names = {i["Name"] for i in cloud.openstack("image", "list", "-f", "json", env=env)}
    assert names == {"pub", "stratus-demo"}, names
    assert cloud.openstack("image", "show", "pub", "-f", "json", env=env)["visibility"] == "public"
    priv = cloud.openstack("image", "show", "priv", "-f", "json")["id"]
    r = cloud.openstack("image", "show", priv, check=False, env=env)
    assert r.returncode != 0 and ("404" in r.stderr or "No Image found" in r.stderr), r.stderr


def test_image_create_with_import(cloud, tmp_path):
    """`openstack image create --import`: the interoperable import (stage, then glance-direct)."""
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "24M"], check=True,
                   capture_output=True)
    cloud.openstack("image", "create", "--import", "--disk-format", "qcow2", "--container-format",
                    "bare", "--file", str(disk), "imported")
    shown = None
    for _ in range(200):
        shown = cloud.openstack("image", "show", "imported", "-f", "json")
        if shown["status"] not in ("uploading", "importing"):
            break
        time.sleep(0.1)
    assert shown["status"] == "active", shown
    assert shown["checksum"] == hashlib.md5(disk.read_bytes()).hexdigest()
    out = tmp_path / "back.qcow2"
    cloud.openstack("image", "save", "--file", str(out), "imported")
    assert out.read_bytes() == disk.read_bytes()
