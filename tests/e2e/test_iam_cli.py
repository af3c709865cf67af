"""IAM through the real `openstack` CLI: system policies as roles, grants to groups on a project,
on all projects (inherited) and on the domain, and their effect on the next request."""


def test_grants_with_the_cli(cloud):
    roles = cloud.openstack("role", "list", "-f", "json")
    names = {r["Name"] for r in roles}
    assert {"te_admin", "secu_admin", "system_all_ecs_full"} <= names, names

    cloud.openstack("project", "create", "p1", "-f", "json")
    cloud.openstack("user", "create", "--password", "pw", "u1", "-f", "json")
    cloud.openstack("group", "create", "g1", "-f", "json")
    cloud.openstack("group", "add", "user", "g1", "u1")

    env = cloud.env(OS_AUTH_URL=cloud.url + "/identity", OS_USERNAME="u1", OS_PASSWORD="pw",
                    OS_PROJECT_NAME="p1", OS_USER_DOMAIN_NAME="Default",
                    OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3")
    del env["OS_CLOUD"]
    # Without a grant on p1 there is no token for it (Keystone's 401).
    r = cloud.openstack("group", "list", check=False, env=env)
    assert r.returncode != 0 and "HTTP 401" in r.stderr, r.stderr
    # A grant on p1 gives a token; ECS FullAccess does not reach IAM's actions.
    cloud.openstack("role", "add", "--group", "g1", "--project", "p1", "system_all_ecs_full")
    r = cloud.openstack("group", "list", check=False, env=env)
    assert r.returncode != 0 and "iam:groups:listGroups" in r.stderr, r.stderr

    # Security Administrator on the project does not reach the global IAM service ...
    cloud.openstack("role", "add", "--group", "g1", "--project", "p1", "secu_admin")
    r = cloud.openstack("group", "list", check=False, env=env)
    assert r.returncode != 0, r.stdout
    # ... on all projects (inherited) it does, at the next request.
    cloud.openstack("role", "add", "--group", "g1", "--domain", "default", "--inherited", "secu_admin")
    groups = cloud.openstack("group", "list", "-f", "json", env=env)
    assert "g1" in {g["Name"] for g in groups}
    cloud.openstack("role", "remove", "--group", "g1", "--domain", "default", "--inherited", "secu_admin")
    r = cloud.openstack("group", "list", check=False, env=env)
    assert r.returncode != 0, r.stdout
    # On the domain itself it does too.
    cloud.openstack("role", "add", "--group", "g1", "--domain", "default", "secu_admin")
    cloud.openstack("group", "list", "-f", "json", env=env)
