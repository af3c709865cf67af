"""Huawei Cloud's official Python SDK against stratus, unchanged, with AK/SK signing: IAM
administration (users, groups, a custom policy, grants, access keys), then ECS and IMS calls of
the user the admin made (with her permanent key and a temporary one), and the refusals of
signatures that do not hold.

Only the admin's first access key is made with a token (plain HTTP): a key needs a key or a
token, and the SDK signs with keys only. Everything after it goes through the SDK."""

import json
import time
import urllib.request

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials, GlobalCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkecs.v2 import EcsClient
from huaweicloudsdkecs.v2 import model as ecs
from huaweicloudsdkiam.v3 import IamClient
from huaweicloudsdkiam.v3 import model as iam
from huaweicloudsdkims.v2 import ImsClient
from huaweicloudsdkims.v2 import model as ims

DEMO_IMAGE = "1f3a7b52-6c0e-4d8a-9b1e-5d2c3a4f6e70"


def huawei(cloud):
    with open(f"{cloud.data_dir}/huaweicloud.json") as f:
        return json.load(f)


def http(method, url, token=None, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req) as r:
        return r.headers, json.loads(r.read() or b"null")


def admin_key(cloud, hw):
    """The admin's first access key, made with a token."""
    iam_url = hw["endpoints"]["iam"]
    pw = open(f"{cloud.data_dir}/admin-password").read().strip()
    headers, _ = http("POST", f"{iam_url}/v3/auth/tokens", body={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": hw["domain_id"]}, "password": pw}}},
        "scope": {"project": {"id": hw["project_id"]}}}})
    token = headers["X-Subject-Token"]
    _, users = http("GET", f"{iam_url}/v3/users?name=admin", token)
    _, key = http("POST", f"{iam_url}/v3.0/OS-CREDENTIAL/credentials", token,
                  {"credential": {"user_id": users["users"][0]["id"], "description": "bootstrap"}})
    return key["credential"]["access"], key["credential"]["secret"]


def iam_client(hw, ak, sk):
    return IamClient.new_builder() \
        .with_credentials(GlobalCredentials(ak, sk, hw["domain_id"])) \
        .with_endpoints([hw["endpoints"]["iam"]]).build()


def test_the_sdk_administers_iam_and_runs_a_server_with_access_keys(cloud):
    hw = huawei(cloud)
    admin = iam_client(hw, *admin_key(cloud, hw))

    # The admin makes a user, a group, a custom policy, a grant on the demo project, and a key.
    user = admin.keystone_create_user(iam.KeystoneCreateUserRequest(
        body=iam.KeystoneCreateUserRequestBody(user=iam.KeystoneCreateUserOption(
            name="sdk-user", domain_id=hw["domain_id"], password="Sdk-pass-1")))).user
    group = admin.keystone_create_group(iam.KeystoneCreateGroupRequest(
        body=iam.KeystoneCreateGroupRequestBody(group=iam.KeystoneCreateGroupOption(
            name="sdk-group", domain_id=hw["domain_id"])))).group
    admin.keystone_add_user_to_group(iam.KeystoneAddUserToGroupRequest(group_id=group.id, user_id=user.id))
    admin.keystone_check_user_in_group(iam.KeystoneCheckUserInGroupRequest(group_id=group.id, user_id=user.id))
    policy = admin.create_cloud_service_custom_policy(iam.CreateCloudServiceCustomPolicyRequest(
        body=iam.CreateCloudServiceCustomPolicyRequestBody(role=iam.ServicePolicyRoleOption(
            display_name="sdk-servers", type="AX", description="servers and images",
            policy=iam.ServicePolicy(version="1.1", statement=[iam.ServiceStatement(
                effect="Allow",
                action=["ecs:*:*", "ims:images:create", "ims:images:get", "ims:images:list",
                        "ims:images:update", "evs:*:*"])]))))).role
    demo = admin.keystone_list_projects(iam.KeystoneListProjectsRequest(name="demo")).projects[0]
    admin.keystone_associate_group_with_project_permission(
        iam.KeystoneAssociateGroupWithProjectPermissionRequest(
            project_id=demo.id, group_id=group.id, role_id=policy.id))
    admin.keystone_check_project_permission_for_group(
        iam.KeystoneCheckProjectPermissionForGroupRequest(
            project_id=demo.id, group_id=group.id, role_id=policy.id))
    created = admin.create_permanent_access_key(iam.CreatePermanentAccessKeyRequest(
        body=iam.CreatePermanentAccessKeyRequestBody(credential=iam.CreateCredentialOption(
            user_id=user.id, description="sdk")))).credential
    assert created.status == "active" and len(created.secret) == 40
    listed = admin.list_permanent_access_keys(iam.ListPermanentAccessKeysRequest(user_id=user.id))
    assert [k.access for k in listed.credentials] == [created.access]
    assert admin.show_permanent_access_key(
        iam.ShowPermanentAccessKeyRequest(access_key=created.access)).credential.user_id == user.id

    # The user, with her key, on ECS and IMS.
    cred = BasicCredentials(created.access, created.secret, demo.id)
    ecs_client = EcsClient.new_builder().with_credentials(cred) \
        .with_endpoints([hw["endpoints"]["ecs"]]).build()
    ims_client = ImsClient.new_builder().with_credentials(cred) \
        .with_endpoints([hw["endpoints"]["ims"]]).build()
    images = ims_client.glance_list_images(ims.GlanceListImagesRequest()).images
    assert DEMO_IMAGE in [i.id for i in images]
    # IMS's own listing: the demo image is a public ("gold") one of enterprise project "0".
    gold = ims_client.list_images(ims.ListImagesRequest(imagetype="gold", enterprise_project_id="0")).images
    assert DEMO_IMAGE in [i.id for i in gold]
    assert ims_client.list_images(ims.ListImagesRequest(imagetype="private")).images == []
    assert ims_client.list_images(ims.ListImagesRequest(enterprise_project_id="other")).images == []
    server = ecs_client.nova_create_servers(ecs.NovaCreateServersRequest(
        body=ecs.NovaCreateServersRequestBody(server=ecs.NovaCreateServersOption(
            name="sdk-server", image_ref=DEMO_IMAGE, flavor_ref="1")))).server
    for _ in range(120):
        shown = ecs_client.nova_show_server(ecs.NovaShowServerRequest(server_id=server.id)).server
        if shown.status != "BUILD":
            break
        time.sleep(0.5)
    assert shown.status == "ACTIVE"
    # ECS's own reads of it.
    detail = ecs_client.show_server(ecs.ShowServerRequest(server_id=server.id)).server
    assert (detail.id, detail.status, detail.flavor.id, detail.enterprise_project_id) == \
        (server.id, "ACTIVE", "1", "0")
    page = ecs_client.list_servers_details(ecs.ListServersDetailsRequest(limit=10, offset=1))
    assert (page.count, [s.id for s in page.servers]) == (1, [server.id])
    with pytest.raises(ClientRequestException) as e:
        ecs_client.show_server(ecs.ShowServerRequest(server_id="00000000-0000-4000-8000-000000000000"))
    assert (e.value.status_code, e.value.error_code) == (404, "Ecs.0114")
    # An image of the running server with IMS: a job the SDK follows to SUCCESS.
    job_id = ims_client.create_image(ims.CreateImageRequest(body=ims.CreateImageRequestBody(
        name="sdk-image", instance_id=server.id, description="by the SDK",
        image_tags=[ims.TagKeyValue(key="team", value="blue")]))).job_id
    for _ in range(480):
        job = ims_client.show_job(ims.ShowJobRequest(job_id=job_id))
        if job.status in ("SUCCESS", "FAIL"):
            break
        time.sleep(0.25)
    assert (job.status, job.job_type) == ("SUCCESS", "imsCreateImageByInstance"), job
    assert job.entities.image_name == "sdk-image"
    private = ims_client.list_images(ims.ListImagesRequest(imagetype="private")).images
    assert [(i.id, i.name, i.status) for i in private] == [(job.entities.image_id, "sdk-image", "active")]
    updated = ims_client.update_image(ims.UpdateImageRequest(image_id=job.entities.image_id, body=[
        ims.UpdateImageRequestBody(op="replace", path="/name", value="sdk-renamed"),
        ims.UpdateImageRequestBody(op="replace", path="/__description", value="renamed by the SDK")]))
    assert (updated.name, updated.description, updated.enterprise_project_id) == \
        ("sdk-renamed", "renamed by the SDK", "0")
    # A server that is not hers to see: IMS's own answer (400, IMG.0005).
    with pytest.raises(ClientRequestException) as e:
        ims_client.create_image(ims.CreateImageRequest(body=ims.CreateImageRequestBody(
            name="nope", instance_id="00000000-0000-4000-8000-000000000000")))
    assert (e.value.status_code, e.value.error_code) == (400, "IMG.0005")
    listed = ecs_client.nova_list_servers(ecs.NovaListServersRequest()).servers
    assert [s.id for s in listed] == [server.id]
    ecs_client.nova_delete_server(ecs.NovaDeleteServerRequest(server_id=server.id))

    # Her policy does not reach IAM: the SDK sees Huawei's 403.
    user_iam = iam_client(hw, created.access, created.secret)
    with pytest.raises(ClientRequestException) as e:
        user_iam.keystone_create_user(iam.KeystoneCreateUserRequest(
            body=iam.KeystoneCreateUserRequestBody(user=iam.KeystoneCreateUserOption(
                name="not-allowed", domain_id=hw["domain_id"]))))
    assert e.value.status_code == 403
    # Her own keys she manages herself.
    assert len(user_iam.list_permanent_access_keys(iam.ListPermanentAccessKeysRequest()).credentials) == 1
    # A temporary key made with her permanent one works with its security token.
    tmp = user_iam.create_temporary_access_key_by_token(iam.CreateTemporaryAccessKeyByTokenRequest(
        body=iam.CreateTemporaryAccessKeyByTokenRequestBody(auth=iam.TokenAuth(
            identity=iam.TokenAuthIdentity(methods=["token"], token=iam.IdentityToken(
                duration_seconds=900)))))).credential
    tmp_ecs = EcsClient.new_builder().with_credentials(
        BasicCredentials(tmp.access, tmp.secret, demo.id).with_security_token(tmp.securitytoken)) \
        .with_endpoints([hw["endpoints"]["ecs"]]).build()
    assert isinstance(tmp_ecs.nova_list_servers(ecs.NovaListServersRequest()).servers, list)  # 401 raises

    # A wrong secret, an inactive key and a deleted key are each a 401.
    wrong = EcsClient.new_builder().with_credentials(
        BasicCredentials(created.access, created.secret[:-1] + ("x" if created.secret[-1] != "x" else "y"), demo.id)) \
        .with_endpoints([hw["endpoints"]["ecs"]]).build()
    with pytest.raises(ClientRequestException) as e:
        wrong.nova_list_servers(ecs.NovaListServersRequest())
    assert e.value.status_code == 401
    admin.update_permanent_access_key(iam.UpdatePermanentAccessKeyRequest(
        access_key=created.access, body=iam.UpdatePermanentAccessKeyRequestBody(
            credential=iam.UpdateCredentialOption(status="inactive"))))
    with pytest.raises(ClientRequestException) as e:
        ecs_client.nova_list_servers(ecs.NovaListServersRequest())
    assert e.value.status_code == 401
    # Active again, it works again; deleted, it is a 401 of its own.
    admin.update_permanent_access_key(iam.UpdatePermanentAccessKeyRequest(
        access_key=created.access, body=iam.UpdatePermanentAccessKeyRequestBody(
            credential=iam.UpdateCredentialOption(status="active"))))
    assert isinstance(ecs_client.nova_list_servers(ecs.NovaListServersRequest()).servers, list)
    admin.delete_permanent_access_key(iam.DeletePermanentAccessKeyRequest(access_key=created.access))
    with pytest.raises(ClientRequestException) as e:
        ecs_client.nova_list_servers(ecs.NovaListServersRequest())
    assert e.value.status_code == 401

    # The admin cleans up with the SDK.
    admin.keystone_remove_user_from_group(
        iam.KeystoneRemoveUserFromGroupRequest(group_id=group.id, user_id=user.id))
    admin.delete_custom_policy(iam.DeleteCustomPolicyRequest(role_id=policy.id))
    admin.keystone_delete_group(iam.KeystoneDeleteGroupRequest(group_id=group.id))
