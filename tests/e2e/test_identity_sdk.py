"""Identity and grants through openstacksdk, as an application would use them."""

import os

import openstack


def test_sdk_identity_and_grants(cloud, monkeypatch):
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", cloud.clouds_yaml)
    conn = openstack.connect(cloud="stratus-admin")
    try:
        p = conn.identity.create_project(name="sdk-p", description="from the sdk")
        assert p.id and p.domain_id == "default"
        u = conn.identity.create_user(name="sdk-u", password="pw", default_project_id=p.id)
        g = conn.identity.create_group(name="sdk-g")
        conn.identity.add_user_to_group(u, g)
        assert conn.identity.check_user_in_group(u, g)
        assert "sdk-p" in {x.name for x in conn.identity.projects()}

        role = conn.identity.find_role("system_all_ecs_full")
        assert role is not None
        conn.identity.assign_project_role_to_group(p, g, role)
        assert conn.identity.validate_group_has_project_role(p, g, role)

        # The new user authenticates and is refused identity administration.
        user_conn = openstack.connect(auth_url=cloud.url + "/identity", username="sdk-u", password="pw",
                                      project_id=p.id, user_domain_name="Default",
                                      load_yaml_config=False, load_envvars=False)
        assert user_conn.current_project_id == p.id
        try:
            list(user_conn.identity.users())
            raise AssertionError("listing users should be forbidden")
        except openstack.exceptions.ForbiddenException as e:
            assert "iam:users:listUsers" in str(e)
        user_conn.close()

        conn.identity.unassign_project_role_from_group(p, g, role)
        assert not conn.identity.validate_group_has_project_role(p, g, role)
        conn.identity.delete_user(u)
        conn.identity.delete_group(g)
        conn.identity.delete_project(p)
    finally:
        conn.close()
    assert os.path.exists(cloud.clouds_yaml)
