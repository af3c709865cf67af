"""Images through the real `openstack` CLI: create from a file, list, show, set, save, delete;
the saved file is byte for byte the uploaded one and the digests are md5sum's and sha512sum's."""

import hashlib
import os
import subprocess


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
    assert [i["Name"] for i in listed] == ["img"]

    cloud.openstack("image", "set", "--property", "k=v", "--tag", "t", "img")
    shown = cloud.openstack("image", "show", "img", "-f", "json")
    assert shown["properties"]["k"] == "v" and shown["tags"] == ["t"]

    out = tmp_path / "out.qcow2"
    cloud.openstack("image", "save", "--file", str(out), "img")
    assert out.read_bytes() == data

    cloud.openstack("image", "delete", "img")
    assert cloud.openstack("image", "list", "-f", "json") == []
    assert not [f for f in os.listdir(os.path.join(cloud.data_dir, "images"))]
