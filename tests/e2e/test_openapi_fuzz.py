"""Every operation of the OpenAPI description, fuzzed by schemathesis against a real `stratus
serve` on SQLite: no response may be a server error, and every response must match the
description (status, content type, headers, body schema).

The description is the one the server serves at /openapi.json; the run only adds, for each path
parameter, the ids of real resources made beforehand as likely values, so that the cases reach
past "not found"."""

import json
import os
import pathlib
import re
import subprocess
import sys
import urllib.request

from conftest import Cloud

SCHEMATHESIS = str(pathlib.Path(sys.executable).parent / "schemathesis")
HERE = pathlib.Path(__file__).resolve().parent
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
])
# Cases per operation and phase; the seed makes a run repeatable.
MAX_EXAMPLES = int(os.environ.get("STRATUS_FUZZ_EXAMPLES", "10"))
SEED = int(os.environ.get("STRATUS_FUZZ_SEED", "20261202"))


def request(cloud, method, path, token=None, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(cloud.url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
        return r.status, r.headers, (json.loads(text) if text else None)


def admin_token(cloud):
    pw = open(os.path.join(cloud.data_dir, "admin-password")).read().strip()
    _, h, b = request(cloud, "POST", "/identity/v3/auth/tokens", body={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": pw}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    return h["X-Subject-Token"], b["token"]["user"]["id"]


def fixtures(cloud, t, admin_id):
    """One of each resource, by the path parameter names that would name it."""
    ids = {}
    _, _, b = request(cloud, "POST", "/identity/v3/projects", t, {"project": {"name": "fz-p"}})
    ids["project"] = b["project"]["id"]
    _, _, b = request(cloud, "POST", "/identity/v3/users", t,
                      {"user": {"name": "fz-u", "password": "fz-password"}})
    ids["user"] = b["user"]["id"]
    _, _, b = request(cloud, "POST", "/identity/v3/groups", t, {"group": {"name": "fz-g"}})
    ids["group"] = b["group"]["id"]
    _, _, b = request(cloud, "POST", "/identity/v3.0/OS-ROLE/roles", t, {"role": {
        "display_name": "fz-r", "type": "XA", "policy": {"Version": "1.1", "Statement": [
            {"Effect": "Allow", "Action": ["ecs:servers:get"]}]}}})
    ids["role"] = b["role"]["id"]
    _, _, b = request(cloud, "POST", "/identity/v3.0/enterprise-projects", t, {"name": "fz-ep"})
    ids["ep"] = b["enterprise_project"]["id"]
    ids["admin"] = admin_id
    _, _, b = request(cloud, "POST", f"/identity/v3/users/{admin_id}/application_credentials",
                      t, {"application_credential": {"name": "fz-ac"}})
    ids["app_cred"] = b["application_credential"]["id"]
    _, _, b = request(cloud, "POST", "/image/v2/images", t,
                      {"name": "fz-i", "disk_format": "raw", "container_format": "bare",
                       "tags": ["fz"], "visibility": "shared"})
    ids["image"] = b["id"]
    _, _, b = request(cloud, "POST", "/volume/v3/volumes", t, {"volume": {"size": 1}})
    ids["volume"] = b["volume"]["id"]
    _, _, b = request(cloud, "POST", "/volume/v3/snapshots", t,
                      {"snapshot": {"volume_id": ids["volume"]}})
    ids["snapshot"] = b["snapshot"]["id"]
    _, _, b = request(cloud, "POST", "/volume/v3/volumes", t, {"volume": {"size": 1}})
    ids["volume2"] = b["volume"]["id"]
    _, _, b = request(cloud, "GET", "/image/v2/images?name=stratus-demo", t)
    ids["demo_image"] = b["images"][0]["id"]
    _, _, b = request(cloud, "POST", "/compute/v2.1/servers", t, {"server": {
        "name": "fz-s", "imageRef": ids["demo_image"], "flavorRef": "1"}})
    ids["server"] = b["server"]["id"]
    _, _, b = request(cloud, "GET", "/identity/v3/projects?name=admin", t)
    ids["admin_project"] = b["projects"][0]["id"]
    return ids


def values_for(path, name, ids):
    """Real values a path parameter may take."""
    by_name = {
        "user_id": [ids["user"]], "group_id": [ids["group"]], "role_id": [ids["role"]],
        "project_id": [ids["project"]], "domain_id": ["default"],
        "enterprise_project_id": [ids["ep"]], "image_id": [ids["image"], ids["demo_image"]],
        "server_id": [ids["server"]], "volume_id": [ids["volume"], ids["volume2"]],
        "snapshot_id": [ids["snapshot"]], "flavor_id": ["1", "2"],
        "tenant_id": [ids["admin_project"]], "target_project_id": [ids["admin_project"]],
        "member_id": [ids["project"]], "tag": ["fz"], "key": ["fz"],
        "application_credential_id": [ids["app_cred"]],
    }
    if name == "user_id" and "application_credentials" in path:
        return [ids["admin"]]
    if name == "id":
        for prefix, key in [("/identity/v3/users/", "user"), ("/identity/v3/groups/", "group"),
                            ("/identity/v3/projects/", "project")]:
            if path.startswith(prefix):
                return [ids[key]]
        return ["default"]
    return by_name.get(name, [])


def test_every_operation_fuzzed_without_server_errors_or_schema_violations(tmp_path):
    cloud = Cloud("sqlite")
    try:
        t, admin_id = admin_token(cloud)
        ids = fixtures(cloud, t, admin_id)
        with urllib.request.urlopen(cloud.url + "/openapi.json", timeout=30) as r:
            doc = json.load(r)
        operations = 0
        for path, item in doc["paths"].items():
            for op in item.values():
                operations += 1
                for p in op.get("parameters", []):
                    if p["in"] == "path":
                        real = values_for(path, p["name"], ids)
                        if real:
                            p["schema"] = {"anyOf": [{"enum": real}, p["schema"]]}
        schema = tmp_path / "openapi.json"
        schema.write_text(json.dumps(doc))
        report = tmp_path / "report"
        env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
                   PYTHONPATH=str(HERE))
        r = subprocess.run(
            [SCHEMATHESIS, "run", str(schema), "--url", cloud.url,
             "-H", f"X-Auth-Token: {t}", "--checks", CHECKS,
             "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
             "--generation-database", "none", "--no-color", "--workers", "1",
             "--request-timeout", "60", "--report", "json", "--report-dir", str(report)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800)
        out = r.stdout + r.stderr
        summary = [l for l in out.splitlines() if "generated" in l or "Tested:" in l]
        print(f"operations in the description: {operations}")
        print("\n".join(summary))
        assert r.returncode == 0, out[-20000:]
        # Every operation of the description was exercised, not only the ones that parsed.
        tested = [int(m.group(1)) for m in re.finditer(r"Tested: (\d+)", out)]
        assert tested == [operations], summary
        # Nothing the server logged was a failure of its own.
        log = open(os.path.join(cloud.tmp, "server.log")).read()
        assert "request failed" not in log, log[-5000:]
    finally:
        assert cloud.stop() == 0
