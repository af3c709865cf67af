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
    # No grant on demo yet: no token for it (as upstream: the user has no access to the project).
    r = cloud.openstack("token", "issue", check=False, env=env)
    assert r.returncode != 0 and "401" in r.stderr, r.stderr
    cloud.openstack("group", "create", "guests")
    cloud.openstack("group", "add", "user", "guests", "alice")
    cloud.openstack("role", "add", "--group", "guests", "--project", "demo", "te_guest")
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


def test_role_assignment_list(cloud):
    cloud.openstack("project", "create", "p1")
    cloud.openstack("user", "create", "--password", "x", "u1")
    cloud.openstack("group", "create", "g1")
    cloud.openstack("group", "add", "user", "g1", "u1")
    cloud.openstack("role", "add", "--group", "g1", "--project", "p1", "system_all_ecs_full")
    cloud.openstack("role", "add", "--group", "g1", "--domain", "default", "--inherited", "te_guest")
    rows = cloud.openstack("role", "assignment", "list", "--group", "g1", "--names", "-f", "json")
    got = sorted((r["Role"], r["Group"], r["Project"], r["Domain"], r["Inherited"]) for r in rows)
    assert got == [("system_all_ecs_full", "g1@Default", "p1@Default", "", False),
                   ("te_guest", "g1@Default", "", "Default", True)], rows
    eff = cloud.openstack("role", "assignment", "list", "--user", "u1", "--project", "p1", "--effective",
                          "--names", "-f", "json")
    assert sorted(r["Role"] for r in eff) == ["system_all_ecs_full", "te_guest"], eff
    assert all(r["User"] == "u1@Default" for r in eff)


def test_application_credential_then_a_token_with_it(cloud):
    cloud.openstack("user", "create", "--password", "pw", "--project", "demo", "dev")
    cloud.openstack("group", "create", "devs")
    cloud.openstack("group", "add", "user", "devs", "dev")
    cloud.openstack("role", "add", "--group", "devs", "--project", "demo", "system_all_ims_full")
    env = cloud.env()
    env.pop("OS_CLOUD")
    env.update(OS_AUTH_URL=f"{cloud.url}/identity", OS_USERNAME="dev", OS_PASSWORD="pw",
               OS_PROJECT_NAME="demo", OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default",
               OS_IDENTITY_API_VERSION="3")
    ac = cloud.openstack("application", "credential", "create", "ci", "-f", "json", env=env)
    assert ac["Secret"] and ac["ID"], ac
    listed = cloud.openstack("application", "credential", "list", "-f", "json", env=env)
    assert [a["Name"] for a in listed] == ["ci"]
    # A token with only the credential: no user name, password or project.
    ac_env = cloud.env()
    ac_env.pop("OS_CLOUD")
    ac_env.update(OS_AUTH_URL=f"{cloud.url}/identity", OS_AUTH_TYPE="v3applicationcredential",
                  OS_APPLICATION_CREDENTIAL_ID=ac["ID"], OS_APPLICATION_CREDENTIAL_SECRET=ac["Secret"],
                  OS_IDENTITY_API_VERSION="3")
    token = cloud.openstack("token", "issue", "-f", "json", env=ac_env)
    assert token["project_id"] and token["user_id"], token
    images = cloud.openstack("image", "list", "-f", "json", env=ac_env)
    assert "stratus-demo" in [i["Name"] for i in images]
    cloud.openstack("application", "credential", "delete", "ci", env=env)
    r = cloud.openstack("token", "issue", env=ac_env, check=False)
    assert r.returncode != 0
