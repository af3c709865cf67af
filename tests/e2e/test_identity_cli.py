"""Identity through the real `openstack` CLI, exactly as a new user would try it."""


def test_new_user_flow(cloud):
    token = cloud.openstack("token", "issue", "-f", "json")
    assert token["id"] and token["project_id"] and token["user_id"]
    assert token["expires"]

    p1 = cloud.openstack("project", "create", "p1", "-f", "json")
    assert p1["name"] == "p1" and p1["domain_id"] == "default" and p1["enabled"] is True

    u1 = cloud.openstack("user", "create", "--password", "x", "u1", "-f", "json")
    assert u1["name"] == "u1" and u1["enabled"] is True

    g1 = cloud.openstack("group", "create", "g1", "-f", "json")
    assert g1["name"] == "g1"

    cloud.openstack("group", "add", "user", "g1", "u1")
    r = cloud.openstack("group", "contains", "user", "g1", "u1")
    assert "u1 in group g1" in r.stdout

    projects = cloud.openstack("project", "list", "-f", "json")
    assert sorted(p["Name"] for p in projects) == ["admin", "demo", "p1"]

    users = cloud.openstack("user", "list", "-f", "json")
    assert {u["Name"] for u in users} == {"admin", "u1"}


def test_new_user_can_authenticate_and_is_refused_admin_calls(cloud):
    cloud.openstack("user", "create", "--password", "s3cret", "--project", "demo", "alice", "-f", "json")
    env = cloud.env(OS_CLOUD="", OS_AUTH_URL=cloud.url + "/identity", OS_USERNAME="alice",
                    OS_PASSWORD="s3cret", OS_PROJECT_NAME="demo", OS_USER_DOMAIN_NAME="Default",
                    OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3")
    del env["OS_CLOUD"]
    token = cloud.openstack("token", "issue", "-f", "json", env=env)
    assert token["project_id"]
    r = cloud.openstack("user", "list", check=False, env=env)
    assert r.returncode != 0 and "403" in r.stderr, r.stderr
    # Listing projects falls back to the caller's own projects, as upstream.
    mine = cloud.openstack("project", "list", "-f", "json", env=env)
    assert "demo" in {p["Name"] for p in mine}
    bad = dict(env, OS_PASSWORD="wrong")
    r = cloud.openstack("token", "issue", check=False, env=bad)
    assert r.returncode != 0 and "401" in r.stderr, r.stderr


def test_disable_and_delete(cloud):
    cloud.openstack("user", "create", "--password", "pw", "bob", "-f", "json")
    cloud.openstack("user", "set", "--disable", "bob")
    assert cloud.openstack("user", "show", "bob", "-f", "json")["enabled"] is False
    cloud.openstack("project", "create", "tmp", "-f", "json")
    cloud.openstack("project", "delete", "tmp")
    r = cloud.openstack("project", "show", "tmp", check=False)
    assert r.returncode != 0
    cloud.openstack("user", "delete", "bob")
    names = {u["Name"] for u in cloud.openstack("user", "list", "-f", "json")}
    assert "bob" not in names
