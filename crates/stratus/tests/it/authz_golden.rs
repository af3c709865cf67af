//! The authorization golden table: for every catalogue entry the server serves, the status each
//! principal profile gets, compared with `tests/golden/authz.tsv`.
//!
//! Profiles:
//! - `anonymous`: no token (401 everywhere but public routes);
//! - `no_policy`: a user of the domain with no grant at all, on resources of its domain (403
//!   naming the action, except routes needing no decision);
//! - `other_domain`: the domain administrator on resources of another domain (404, whatever the
//!   policies say); `-` where the route names no resource;
//! - `without_each`: for a route with dependency actions, a user allowed every required action but
//!   one, for each one in turn: `403` when every such request is refused naming exactly the
//!   missing action (so each dependency is decided), `-` for routes without dependencies.
//!
//! The `required` column is the route's action and its dependencies, as decided.
//!
//! `STRATUS_BLESS=1 cargo test -p stratus --test it authz_golden` rewrites the file after a deliberate change.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use stratus_iam::Catalogue;
use stratus_store::{DomainRec, EnterpriseProjectRec, GroupRec, ProjectRec, RoleRec, UserRec};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/authz.tsv");
const NOT_YET_SERVED: &[&str] = &[];

/// The request body of a route: content type and bytes.
type Body = Option<(&'static str, Vec<u8>)>;

fn body_for(key: &str, target_user: &str) -> Body {
    match key {
        "PATCH /image/v2/images/{image_id}" => {
            return Some((
                "application/openstack-images-v2.1-json-patch",
                br#"[{"op": "replace", "path": "/name", "value": "x"}]"#.to_vec(),
            ))
        }
        "PUT /image/v2/images/{image_id}/file" | "PUT /image/v2/images/{image_id}/stage" => {
            return Some(("application/octet-stream", b"data".to_vec()))
        }
        _ => {}
    }
    json_body_for(key, target_user).map(|v| ("application/json", v.to_string().into_bytes()))
}

fn json_body_for(key: &str, target_user: &str) -> Option<Value> {
    let policy = json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"]}]});
    Some(match key {
        "POST /identity/v3/auth/tokens" => password_auth("nobody", "wrong-password", None),
        "POST /identity/v3/projects" => json!({"project": {"name": "golden-p"}}),
        "PATCH /identity/v3/projects/{id}" => json!({"project": {"description": "x"}}),
        "POST /identity/v3/users" => json!({"user": {"name": "golden-u"}}),
        "PATCH /identity/v3/users/{id}" => json!({"user": {"description": "x"}}),
        "POST /identity/v3/users/{id}/password" => {
            json!({"user": {"password": "a", "original_password": "b"}})
        }
        "POST /identity/v3/groups" => json!({"group": {"name": "golden-g"}}),
        "POST /identity/v3/users/{user_id}/application_credentials" => {
            json!({"application_credential": {"name": "golden-ac2"}})
        }
        "PATCH /identity/v3/groups/{id}" => json!({"group": {"description": "x"}}),
        "POST /identity/v3.0/OS-CREDENTIAL/credentials" => {
            json!({"credential": {"user_id": target_user}})
        }
        "POST /identity/v3.0/OS-CREDENTIAL/securitytokens" => {
            json!({"auth": {"identity": {"methods": ["token"]}}})
        }
        "PUT /identity/v3.0/OS-CREDENTIAL/credentials/{access_key}" => {
            json!({"credential": {"description": "x"}})
        }
        "POST /identity/v3.0/OS-ROLE/roles" => {
            json!({"role": {"display_name": "golden-r", "policy": policy}})
        }
        "PATCH /identity/v3.0/OS-ROLE/roles/{role_id}" => json!({"role": {"description": "x"}}),
        "POST /identity/v3.0/enterprise-projects" => json!({"name": "golden-ep"}),
        "PATCH /identity/v3.0/enterprise-projects/{enterprise_project_id}" => {
            json!({"description": "x"})
        }
        "POST /image/v2/images" => json!({"name": "golden-i"}),
        "PATCH /image/v2/cloudimages/{image_id}" => {
            json!([{"op": "replace", "path": "/name", "value": "golden-renamed"}])
        }
        // `{server_id}` is filled in as in paths.
        "POST /image/v2/cloudimages/action" => {
            json!({"name": "golden-ims", "instance_id": "{server_id}"})
        }
        "PUT /compute/v2.1/{project_id}/os-quota-sets/{tenant_id}" => {
            json!({"quota_set": {"instances": 10}})
        }
        "PUT /volume/v3/{project_id}/os-quota-sets/{target_project_id}" => {
            json!({"quota_set": {"volumes": 10}})
        }
        "POST /image/v2/images/{image_id}/import" => json!({"method": {"name": "glance-direct"}}),
        "POST /compute/v2.1/{project_id}/servers" => json!({"server": {"name": "golden-s",
            "imageRef": stratus_services::demo::DEMO_IMAGE_ID, "flavorRef": "1"}}),
        "POST /image/v2/images/{image_id}/members" => json!({"member": "golden-m"}),
        "PUT /image/v2/images/{image_id}/members/{member_id}" => json!({"status": "accepted"}),
        "POST /identity/v3/stratus/policy-simulate" => {
            json!({"simulate": {"user_id": target_user, "actions": ["ecs:servers:get"]}})
        }
        "POST /volume/v3/{project_id}/volumes" => json!({"volume": {"size": 1}}),
        "POST /compute/v2.1/{project_id}/images/{image_id}/metadata" => {
            json!({"metadata": {"k": "v"}})
        }
        "PUT /compute/v2.1/{project_id}/images/{image_id}/metadata" => {
            json!({"metadata": {"k": "v"}})
        }
        "PUT /compute/v2.1/{project_id}/images/{image_id}/metadata/{key}" => {
            json!({"meta": {"k": "v"}})
        }
        "POST /volume/v3/{project_id}/snapshots" => json!({"snapshot": {"volume_id": "golden-v"}}),
        "POST /volume/v3/{project_id}/volumes/{volume_id}/action os-set_bootable" => {
            json!({"os-set_bootable": {"bootable": true}})
        }
        k if k.starts_with("POST /compute/v2.1/{project_id}/servers/{server_id}/action ") => {
            let action = k.rsplit(' ').next().unwrap_or("");
            match action {
                "reboot" => json!({"reboot": {"type": "HARD"}}),
                "os-getConsoleOutput" => json!({"os-getConsoleOutput": {"length": 10}}),
                "createImage" => json!({"createImage": {"name": "golden-snap"}}),
                "createBackup" => json!({"createBackup": {"name": "golden-bk",
                    "backup_type": "daily", "rotation": 1}}),
                "rebuild" => {
                    json!({"rebuild": {"imageRef": stratus_services::demo::DEMO_IMAGE_ID}})
                }
                "addSecurityGroup" | "removeSecurityGroup" => json!({ action: {"name": "default"}}),
                other => json!({ other: null }),
            }
        }
        _ => return None,
    })
}

struct Ids {
    image: String,
    user: String,
    group: String,
    project: String,
    role: String,
    domain: String,
    ep: String,
    server: String,
    volume: String,
    snapshot: String,
    access_key: String,
    job: String,
    /// The project of the token the profile uses (IMS's paths name it).
    token_project: String,
}

/// Fills a path template; `{id}` means the resource its collection names.
fn fill(path: &str, ids: &Ids) -> String {
    let id = if path.contains("/users/{id}") {
        &ids.user
    } else if path.contains("/groups/{id}") {
        &ids.group
    } else if path.contains("/projects/{id}") {
        &ids.project
    } else {
        &ids.domain
    };
    // Compute paths name the token's project as `_`.
    let path = path
        .replace("/compute/v2.1/{project_id}", "/compute/v2.1/_")
        .replace("/volume/v3/{project_id}", "/volume/v3/_")
        .replace(
            "/image/v1/{project_id}",
            &format!("/image/v1/{}", ids.token_project),
        )
        .replace(
            "/compute/v1/{project_id}",
            &format!("/compute/v1/{}", ids.token_project),
        );
    path.replace("{id}", id)
        .replace("{user_id}", &ids.user)
        .replace("{group_id}", &ids.group)
        .replace("{project_id}", &ids.project)
        .replace("{role_id}", &ids.role)
        .replace("{domain_id}", &ids.domain)
        .replace("{enterprise_project_id}", &ids.ep)
        .replace("{image_id}", &ids.image)
        .replace("{tag}", "t")
        .replace("{server_id}", &ids.server)
        .replace("{volume_id}", &ids.volume)
        .replace("{snapshot_id}", &ids.snapshot)
        .replace("{flavor_id}", "1")
        .replace("{member_id}", "m")
        .replace("{key}", "k")
        .replace("{application_credential_id}", "golden-ac")
        .replace("{access_key}", &ids.access_key)
        .replace("{tenant_id}", &ids.project)
        .replace("{target_project_id}", &ids.project)
        .replace("{job_id}", &ids.job)
}

/// Another domain with one of everything, written straight to the store.
async fn other_domain(c: &TestCloud) -> Ids {
    use stratus_store as st;
    let pool = c.store().pool();
    let d = "otherdomain";
    st::domain_insert(
        pool,
        &DomainRec {
            id: d.into(),
            name: "Other".into(),
            description: String::new(),
            enabled: true,
        },
    )
    .await
    .unwrap();
    let ids = Ids {
        image: "00000000-0000-4000-8000-000000000001".into(),
        user: "otheruser".into(),
        group: "othergroup".into(),
        project: "otherproject".into(),
        role: "otherrole".into(),
        domain: d.into(),
        ep: "otherep".into(),
        server: String::new(),
        volume: String::new(),
        snapshot: String::new(),
        access_key: "GOLDENOTHERKEY000000".into(),
        job: String::new(),
        token_project: String::new(),
    };
    st::project_insert(
        pool,
        &ProjectRec {
            tokens_valid_after: 0,
            id: ids.project.clone(),
            domain_id: d.into(),
            name: "op".into(),
            description: String::new(),
            enabled: true,
        },
    )
    .await
    .unwrap();
    st::user_insert(
        pool,
        &UserRec {
            id: ids.user.clone(),
            domain_id: d.into(),
            name: "ou".into(),
            description: String::new(),
            email: None,
            enabled: true,
            password_hash: None,
            default_project_id: None,
            tokens_valid_after: 0,
        },
    )
    .await
    .unwrap();
    st::group_insert(
        pool,
        &GroupRec {
            id: ids.group.clone(),
            domain_id: d.into(),
            name: "og".into(),
            description: String::new(),
        },
    )
    .await
    .unwrap();
    st::role_upsert(
        pool,
        &RoleRec {
            id: ids.role.clone(),
            name: "custom_other".into(),
            display_name: "other's".into(),
            description: String::new(),
            kind: "custom".into(),
            domain_id: Some(d.into()),
            policy:
                r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ecs:servers:get"]}]}"#
                    .into(),
        },
    )
    .await
    .unwrap();
    st::ep_insert(
        pool,
        &EnterpriseProjectRec {
            id: ids.ep.clone(),
            domain_id: d.into(),
            name: "oep".into(),
            description: String::new(),
            enabled: true,
            created_at: 0,
            updated_at: 0,
        },
    )
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    st::image_insert(
        &mut conn,
        &stratus_store::ImageRec {
            id: ids.image.clone(),
            owner: ids.project.clone(),
            enterprise_project_id: "0".into(),
            name: Some("other's".into()),
            status: stratus_store::ImageStatus::Queued,
            visibility: "private".into(),
            protected: false,
            disk_format: None,
            container_format: None,
            min_disk: 0,
            min_ram: 0,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            properties: Default::default(),
            tags: vec![],
            created_at: 0,
            updated_at: 0,
        },
    )
    .await
    .unwrap();
    ids
}

async fn status(
    c: &TestCloud,
    m: &Method,
    path: &str,
    token: Option<&str>,
    subject: Option<&str>,
    body: Body,
) -> StatusCode {
    let mut req = c.http.request(m.clone(), format!("{}{}", c.url, path));
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    if let Some(s) = subject {
        req = req.header("X-Subject-Token", s);
    }
    if let Some((ct, b)) = body {
        req = req.header("Content-Type", ct).body(b);
    }
    req.send().await.expect("request").status()
}

async fn golden_table(c: &TestCloud) {
    let admin = c.admin_token().await;
    let target = c.create_user(&admin, "target", "pw").await;
    let nobody = c.create_user(&admin, "nobody", "pw").await;
    let group = c.group_with(&admin, "tgroup", &target).await;
    let (_, p) = c
        .post(
            &admin,
            "/identity/v3/projects",
            json!({"project": {"name": "tproj"}}),
        )
        .await;
    let role = c
        .custom_policy(&admin, "tpolicy", json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"]}]}))
        .await;
    let (_, ep) = c
        .post(
            &admin,
            "/identity/v3.0/enterprise-projects",
            json!({"name": "tep"}),
        )
        .await;
    // An image of the demo project, where the policy-less user works.
    let demo = c.project_id(&admin, "demo").await;
    let (s, t, b) = c
        .auth(password_auth("admin", &c.admin_password, Some("demo")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, _, img) = c
        .call(
            Method::POST,
            "/image/v2/images",
            t.as_deref(),
            Some(json!({"name": "timage", "tags": ["t"]})),
        )
        .await;
    let (_, _, server) = c
        .call(
            Method::POST,
            "/compute/v2.1/servers",
            t.as_deref(),
            Some(json!({"server": {"name": "tserver", "imageRef": stratus_services::demo::DEMO_IMAGE_ID, "flavorRef": "1"}})),
        )
        .await;
    // A job: an image of the server made through IMS, waited for so that the server is idle
    // again before any route acts on it.
    let server_id = server["server"]["id"].as_str().expect("server id");
    let t = t.expect("token");
    c.wait_server(&t, server_id, "ACTIVE").await;
    let (s, job) = c
        .post(
            &t,
            "/image/v2/cloudimages/action",
            json!({"name": "tjob", "instance_id": server_id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let job = job["job_id"].as_str().expect("job id").to_string();
    let mut job_status = Value::Null;
    for _ in 0..600 {
        let (_, b) = c.get(&t, &format!("/image/v1/{demo}/jobs/{job}")).await;
        job_status = b["status"].clone();
        if job_status == "SUCCESS" || job_status == "FAIL" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(job_status, "SUCCESS");
    c.wait_no_task(&t, server_id).await;
    let t = Some(t);
    let (_, _, volume) = c
        .call(
            Method::POST,
            "/volume/v3/volumes",
            t.as_deref(),
            Some(json!({"volume": {"size": 1}})),
        )
        .await;
    let (_, _, snapshot) = c
        .call(
            Method::POST,
            "/volume/v3/snapshots",
            t.as_deref(),
            Some(json!({"snapshot": {"volume_id": volume["volume"]["id"]}})),
        )
        .await;
    let own = Ids {
        image: img["id"].as_str().expect("image id").to_string(),
        user: target.clone(),
        group: group.clone(),
        project: p["project"]["id"].as_str().unwrap().to_string(),
        role,
        domain: "default".into(),
        ep: ep["enterprise_project"]["id"].as_str().unwrap().to_string(),
        server: server["server"]["id"]
            .as_str()
            .expect("server id")
            .to_string(),
        volume: volume["volume"]["id"]
            .as_str()
            .expect("volume id")
            .to_string(),
        snapshot: snapshot["snapshot"]["id"]
            .as_str()
            .expect("snapshot id")
            .to_string(),
        access_key: "GOLDENOWNKEY00000000".into(),
        job,
        token_project: demo.clone(),
    };
    // The demo project's server, seen from the admin project, is another project's resource.
    let other = Ids {
        server: own.server.clone(),
        job: own.job.clone(),
        token_project: c.project_id(&admin, "admin").await,
        volume: own.volume.clone(),
        snapshot: own.snapshot.clone(),
        ..other_domain(c).await
    };
    // An application credential of the target user.
    stratus_store::app_cred_insert(
        c.store().pool(),
        &stratus_store::AppCredRec {
            id: "golden-ac".into(),
            user_id: target.clone(),
            project_id: own.project.clone(),
            name: "golden".into(),
            description: None,
            secret_hash: "x".into(),
            expires_at: None,
            unrestricted: false,
            roles: "[]".into(),
            access_rules: "[]".into(),
            created_at: 0,
        },
    )
    .await
    .unwrap();
    // An access key of the target user, and one of the other domain's user.
    for (access, user) in [(&own.access_key, &target), (&other.access_key, &other.user)] {
        stratus_store::access_key_insert(
            c.store().pool(),
            &stratus_store::AccessKeyRec {
                access: access.clone(),
                user_id: user.clone(),
                secret_enc: "x".into(),
                status: stratus_store::AccessKeyStatus::Active,
                description: String::new(),
                created_at: 0,
            },
        )
        .await
        .unwrap();
    }
    // A member of demo allowed nothing (a token needs a grant on its project).
    let demo_id = c.project_id(&admin, "demo").await;
    c.project_member(&admin, &nobody, &demo_id).await;
    let nobody_token = c.token_for("nobody", "pw", Some("demo")).await;
    let nobody_subject = c.token_for("nobody", "pw", Some("demo")).await;

    // A member of demo whose one custom policy is rewritten for each route.
    let dep_user = c.create_user(&admin, "depuser", "pw").await;
    let dep_group = c.group_with(&admin, "depgroup", &dep_user).await;
    let dep_policy = c
        .custom_policy(
            &admin,
            "golden-deps",
            json!({"Version": "1.1", "Statement": [
            {"Effect": "Allow", "Action": ["ecs:servers:get"]}]}),
        )
        .await;
    c.grant_project(&admin, &demo_id, &dep_group, &dep_policy)
        .await;
    let dep_token = c.token_for("depuser", "pw", Some("demo")).await;

    let cat = Catalogue::shipped().unwrap();
    let mut rows =
        vec!["# route\trequired\tanonymous\tno_policy\tother_domain\twithout_each".to_string()];
    let mut denials: HashMap<String, String> = HashMap::new();
    for e in cat.entries() {
        let key = e.key();
        if NOT_YET_SERVED.contains(&key.as_str()) {
            continue;
        }
        let m = Method::from_bytes(e.method.as_bytes()).unwrap();
        let names_resource = e.path.contains('{');
        let token_route = e.path.ends_with("/auth/tokens");
        let body = body_for(&key, &target).map(|(ct, b)| {
            let text = String::from_utf8_lossy(&b).replace("{server_id}", &own.server);
            (ct, text.into_bytes())
        });
        let own_path = fill(&e.path, &own);
        let anon = status(c, &m, &own_path, None, None, body.clone()).await;
        let subject = token_route.then_some(nobody_subject.as_str());
        let np = status(c, &m, &own_path, Some(&nobody_token), subject, body.clone()).await;
        if np == StatusCode::FORBIDDEN && m != Method::HEAD {
            let mut req = c
                .http
                .request(m.clone(), format!("{}{}", c.url, own_path))
                .header("X-Auth-Token", &nobody_token);
            if let Some((ct, b)) = body.clone() {
                req = req.header("Content-Type", ct).body(b);
            }
            let b: Value = req.send().await.unwrap().json().await.unwrap();
            // Keystone and Nova nest the message; Glance does not.
            let msg = b["error"]["message"]
                .as_str()
                .or(b["forbidden"]["message"].as_str())
                .or(b["message"].as_str())
                .unwrap_or_default();
            denials.insert(key.clone(), msg.to_string());
        }
        let od = if names_resource {
            status(
                c,
                &m,
                &fill(&e.path, &other),
                Some(&admin),
                None,
                body.clone(),
            )
            .await
            .as_u16()
            .to_string()
        } else {
            "-".to_string()
        };
        let required = e.required();
        let without_each = if e.dependencies.is_empty() {
            "-".to_string()
        } else {
            let mut seen = Vec::new();
            for missing in &required {
                let allowed: Vec<&str> =
                    required.iter().copied().filter(|a| a != missing).collect();
                let (s, _, b) = c
                    .call(
                        Method::PATCH,
                        &format!("/identity/v3.0/OS-ROLE/roles/{dep_policy}"),
                        Some(&admin),
                        Some(json!({"role": {"policy": {"Version": "1.1", "Statement": [
                            {"Effect": "Allow", "Action": allowed}]}}})),
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{b}");
                let mut req = c
                    .http
                    .request(m.clone(), format!("{}{}", c.url, own_path))
                    .header("X-Auth-Token", &dep_token);
                if let Some((ct, b)) = body.clone() {
                    req = req.header("Content-Type", ct).body(b);
                }
                let r = req.send().await.unwrap();
                let status = r.status();
                let b: Value = r.json().await.unwrap_or(Value::Null);
                let msg = b["error"]["message"]
                    .as_str()
                    .or(b["forbidden"]["message"].as_str())
                    .or(b["message"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let named = msg == format!("Policy doesn't allow {missing} to be performed.");
                if !(status == StatusCode::FORBIDDEN && named) {
                    seen.push(format!("{missing}:{}", status.as_u16()));
                }
            }
            if seen.is_empty() {
                "403".to_string()
            } else {
                seen.join(",")
            }
        };
        rows.push(format!(
            "{key}\t{}\t{}\t{}\t{od}\t{without_each}",
            required.join(","),
            anon.as_u16(),
            np.as_u16()
        ));
    }
    // Every 403 names exactly the route's action.
    for (key, msg) in &denials {
        let e = cat.by_key(key).unwrap();
        assert_eq!(
            msg,
            &format!(
                "Policy doesn't allow {} to be performed.",
                e.required().join(", ")
            ),
            "{key}"
        );
    }
    let actual = rows.join("\n") + "\n";
    if std::env::var("STRATUS_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(GOLDEN, &actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(GOLDEN).expect("golden file (STRATUS_BLESS=1 writes it)");
    if actual != expected {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "authorization table differs from {GOLDEN} ({} vs {} rows):\n{}",
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}
on_both_stores!(golden_table);
