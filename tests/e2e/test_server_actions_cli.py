"""Server actions with the real `openstack` CLI: lock and unlock, rebuild, backups with rotation,
and image properties set through `openstack image set --property`."""

import os
import subprocess


def disks(cloud, server_id):
    return subprocess.run([os.environ.get("STRATUS_BIN", "stratus"), "server", "disks", server_id,
                           "--data-dir", cloud.data_dir] + cloud.store_args(),
                          check=True, capture_output=True, text=True).stdout.split()


def member_env(cloud):
    """A user of project demo with ECS and IMS FullAccess there, but no administrator."""
    cloud.openstack("user", "create", "--password", "pw", "--project", "demo", "op")
    cloud.openstack("group", "create", "ops")
    cloud.openstack("group", "add", "user", "ops", "op")
    for role in ("system_all_ecs_full", "system_all_ims_full"):
        cloud.openstack("role", "add", "--group", "ops", "--project", "demo", role)
    env = cloud.env()
    env.pop("OS_CLOUD")
    env.update(OS_AUTH_URL=f"{cloud.url}/identity", OS_USERNAME="op", OS_PASSWORD="pw",
               OS_PROJECT_NAME="demo", OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default",
               OS_IDENTITY_API_VERSION="3")
    return env


def test_lock_and_unlock(cloud):
    env = member_env(cloud)
    s1 = cloud.openstack("server", "create", "--image", "stratus-demo", "--flavor", "m1.tiny",
                         "--wait", "s1", "-f", "json", env=env)
    cloud.openstack("server", "lock", "s1", env=env)
    shown = cloud.openstack("--os-compute-api-version", "2.9", "server", "show", "s1", "-f", "json",
                            env=env)
    assert shown["locked"] is True, shown
    r = cloud.openstack("server", "stop", "s1", check=False, env=env)
    assert r.returncode != 0 and f"Instance {s1['id']} is locked" in r.stderr, r.stderr
    r = cloud.openstack("server", "delete", "s1", check=False, env=env)
    assert r.returncode != 0, r.stderr
    assert cloud.openstack("server", "show", "s1", "-f", "json", env=env)["status"] == "ACTIVE"
    cloud.openstack("server", "unlock", "s1", env=env)
    cloud.openstack("server", "stop", "s1", env=env)
    assert cloud.openstack("server", "show", "s1", "-f", "json", env=env)["status"] == "SHUTOFF"


def test_rebuild(cloud):
    s1 = cloud.openstack("server", "create", "--image", "stratus-demo", "--flavor", "m1.tiny",
                         "--wait", "s1", "-f", "json")
    before = disks(cloud, s1["id"])[0]
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 4M 64k", before], check=True,
                   capture_output=True)
    # (with --wait the CLI prints "Complete" before its table, so the result is read with show)
    cloud.openstack("server", "rebuild", "--image", "stratus-demo", "--name", "s1b",
                    "--property", "role=web", "--wait", "s1")
    shown = cloud.openstack("server", "show", s1["id"], "-f", "json")
    assert (shown["name"], shown["status"]) == ("s1b", "ACTIVE"), shown
    assert shown["properties"] == {"role": "web"} or shown["properties"] == "role='web'", shown
    after = disks(cloud, s1["id"])[0]
    assert after != before and not os.path.exists(before)
    out = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0 4M 64k", after], check=True,
                         capture_output=True, text=True).stdout
    assert "read 65536/65536" in out


def test_backup_rotation(cloud):
    cloud.openstack("server", "create", "--image", "stratus-demo", "--flavor", "m1.tiny", "--wait", "s1")
    made = []
    for n in range(3):
        b = cloud.openstack("server", "backup", "create", "--name", f"b{n}", "--type", "daily",
                            "--rotate", "2", "--wait", "s1", "-f", "json")
        # (the CLI prints the image as it was before waiting)
        assert cloud.openstack("image", "show", b["id"], "-f", "json")["status"] == "active"
        made.append(b["id"])
    listed = cloud.openstack("image", "list", "--property", "backup_type=daily", "-f", "json")
    assert sorted(i["ID"] for i in listed) == sorted(made[1:])
    shown = cloud.openstack("image", "show", made[2], "-f", "json")
    assert shown["properties"]["image_type"] == "backup"


def test_image_set_property(cloud, tmp_path):
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "16M"], check=True,
                   capture_output=True)
    cloud.openstack("image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--file",
                    str(disk), "img")
    cloud.openstack("image", "set", "--property", "os_distro=debian", "--property", "tier=gold", "img")
    props = cloud.openstack("image", "show", "img", "-f", "json")["properties"]
    assert (props["os_distro"], props["tier"]) == ("debian", "gold"), props
    listed = cloud.openstack("image", "list", "--property", "tier=gold", "-f", "json")
    assert [i["Name"] for i in listed] == ["img"]
    cloud.openstack("image", "unset", "--property", "tier", "img")
    assert "tier" not in cloud.openstack("image", "show", "img", "-f", "json")["properties"]
