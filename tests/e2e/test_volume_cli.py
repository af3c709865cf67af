"""Volumes and snapshots through the real `openstack` CLI: blank and image volumes, a forced
snapshot, a volume from the snapshot, limits, deletes."""


def wait_status(cloud, kind, name, want):
    import time
    for _ in range(100):
        shown = cloud.openstack(*kind, "show", name, "-f", "json")
        if shown["status"] == want:
            return shown
        time.sleep(0.1)
    raise AssertionError(f"{kind} {name} never became {want}: {shown}")


def test_volumes_and_snapshots(cloud):
    cloud.openstack("volume", "create", "--size", "1", "v1", "-f", "json")
    v1 = wait_status(cloud, ["volume"], "v1", "available")
    assert v1["size"] == 1

    cloud.openstack("volume", "create", "--image", "stratus-demo", "--size", "1", "--bootable", "boot1",
                    "-f", "json")
    boot1 = wait_status(cloud, ["volume"], "boot1", "available")
    assert boot1["bootable"] in ("true", True), boot1

    s2 = cloud.openstack("server", "create", "--volume", "boot1", "--flavor", "m1.tiny", "--wait", "s2",
                         "-f", "json")
    assert s2["status"] == "ACTIVE", s2
    assert cloud.openstack("volume", "show", "boot1", "-f", "json")["status"] == "in-use"
    r = cloud.openstack("volume", "delete", "boot1", check=False)
    assert r.returncode != 0 and "400" in r.stderr, r.stderr
    cloud.openstack("server", "delete", "--wait", "s2")
    wait_status(cloud, ["volume"], "boot1", "available")

    cloud.openstack("volume", "snapshot", "create", "--volume", "v1", "--force", "sn1", "-f", "json")
    wait_status(cloud, ["volume", "snapshot"], "sn1", "available")
    snaps = cloud.openstack("volume", "snapshot", "list", "-f", "json")
    assert [s["Name"] for s in snaps] == ["sn1"]

    cloud.openstack("volume", "create", "--snapshot", "sn1", "v2", "-f", "json")
    v2 = wait_status(cloud, ["volume"], "v2", "available")
    assert v2["size"] == 1

    names = {v["Name"] for v in cloud.openstack("volume", "list", "-f", "json")}
    assert names == {"v1", "v2", "boot1"}, names

    r = cloud.openstack("volume", "delete", "v1", check=False)
    assert r.returncode != 0, "a volume with snapshots is not deleted"
    cloud.openstack("volume", "snapshot", "delete", "sn1")
    cloud.openstack("volume", "delete", "v1", "v2", "boot1")
    assert cloud.openstack("volume", "list", "-f", "json") == []
