//! The Identity API over real HTTP, on SQLite and PostgreSQL.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn is_keystone_time(s: &str) -> bool {
    // 2026-01-02T03:04:05.123456Z
    s.len() == 27
        && s.ends_with('Z')
        && s.as_bytes()[10] == b'T'
        && s[20..26].bytes().all(|b| b.is_ascii_digit())
        && s.as_bytes()[19] == b'.'
}

async fn token_body_is_upstream_shaped(c: &TestCloud) {
    let (status, token, body) = c
        .auth(password_auth("admin", &c.admin_password, Some("admin")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = token.expect("X-Subject-Token header");
    let t = &body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], "admin");
    assert_eq!(
        t["user"]["domain"],
        json!({"id": "default", "name": "Default"})
    );
    assert_eq!(t["project"]["name"], "admin");
    assert_eq!(t["project"]["domain"]["id"], "default");
    assert!(
        is_keystone_time(t["expires_at"].as_str().unwrap()),
        "{}",
        t["expires_at"]
    );
    assert!(
        is_keystone_time(t["issued_at"].as_str().unwrap()),
        "{}",
        t["issued_at"]
    );
    assert_eq!(t["audit_ids"].as_array().map(Vec::len), Some(1));
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"te_admin") && roles.contains(&"secu_admin"),
        "{roles:?}"
    );
    let catalog = t["catalog"].as_array().expect("catalog");
    let identity = catalog
        .iter()
        .find(|s| s["type"] == "identity")
        .expect("identity service");
    let eps = identity["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 3);
    for ep in eps {
        for k in ["id", "interface", "region", "region_id", "url"] {
            assert!(ep[k].is_string(), "endpoint lacks {k}: {ep}");
        }
        assert_eq!(ep["url"], format!("{}/identity", c.url));
        assert_eq!(ep["region_id"], "RegionOne");
    }
    // Validation by the same user, with and without the catalogue; HEAD too.
    let r = c
        .http
        .get(format!("{}/identity/v3/auth/tokens?nocatalog", c.url))
        .header("X-Auth-Token", &token)
        .header("X-Subject-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token"]["user"]["name"], "admin");
    assert!(v["token"].get("catalog").is_none());
    let r = c
        .http
        .head(format!("{}/identity/v3/auth/tokens", c.url))
        .header("X-Auth-Token", &token)
        .header("X-Subject-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
on_both_stores!(token_body_is_upstream_shaped);

async fn scopes_by_id_name_and_domain(c: &TestCloud) {
    let admin = c.admin_token().await;
    let (_, projects) = c.get(&admin, "/identity/v3/projects?name=demo").await;
    let demo_id = projects["projects"][0]["id"]
        .as_str()
        .expect("demo project")
        .to_string();
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": c.admin_password}}},
        "scope": {"project": {"id": demo_id}}}});
    let (s, _, b) = c.auth(body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["token"]["project"]["id"], demo_id.as_str());

    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": c.admin_password}}},
        "scope": {"domain": {"name": "Default"}}}});
    let (s, _, b) = c.auth(body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        b["token"]["domain"],
        json!({"id": "default", "name": "Default"})
    );
    assert!(b["token"].get("project").is_none());

    // A user with no default project gets an unscoped token without catalogue or roles.
    c.create_user(&admin, "plain", "pw-plain").await;
    let (s, _, b) = c.auth(password_auth("plain", "pw-plain", None)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(b["token"].get("project").is_none() && b["token"].get("catalog").is_none());

    // Re-scoping with the token method keeps the expiry (to a project the user may use).
    let plain = c.get(&admin, "/identity/v3/users?name=plain").await.1["users"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, _) = c
        .auth(
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "plain", "domain": {"name": "Default"}, "password": "pw-plain"}}},
            "scope": {"project": {"id": demo_id}}}}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "no grant on the project, no token for it"
    );
    c.project_member(&admin, &plain, &demo_id).await;
    let (_, t, first) = c.auth(password_auth("plain", "pw-plain", None)).await;
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": t.unwrap()}},
        "scope": {"project": {"id": demo_id}}}});
    let (s, _, b) = c.auth(body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["token"]["expires_at"], first["token"]["expires_at"]);
    assert_eq!(b["token"]["methods"], json!(["token"]));
}
on_both_stores!(scopes_by_id_name_and_domain);

async fn bad_credentials_and_scopes(c: &TestCloud) {
    let (s, t, b) = c.auth(password_auth("admin", "wrong", Some("admin"))).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    assert!(t.is_none());
    let (s, _, b) = c.auth(password_auth("nobody", "x", None)).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    // Unknown scope project: 401 as Keystone.
    let (s, _, b) = c
        .auth(password_auth(
            "admin",
            &c.admin_password,
            Some("no-such-project"),
        ))
        .await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    // Malformed scopes: 400.
    for scope in [
        json!({"project": {}}),
        json!({"project": {"name": "admin"}}),
        json!({"project": {"id": "x"}, "domain": {"id": "default"}}),
        json!({}),
        json!("sideways"),
        json!({"system": {"all": true}}),
    ] {
        let mut body = password_auth("admin", &c.admin_password, None);
        body["auth"]["scope"] = scope.clone();
        let (s, _, b) = c.auth(body).await;
        assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
        let _ = scope;
    }
    // Unsupported method.
    let body = json!({"auth": {"identity": {"methods": ["totp"]}}});
    let (s, _, b) = c.auth(body).await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
}
on_both_stores!(bad_credentials_and_scopes);

async fn malformed_bodies_get_clear_4xx(c: &TestCloud) {
    let url = format!("{}/identity/v3/auth/tokens", c.url);
    let send = |body: Vec<u8>, ct: &'static str| {
        let http = c.http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(url)
                .header("Content-Type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status();
            assert!(r.headers().contains_key("x-openstack-request-id"));
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, b) = send(b"{not json".to_vec(), "application/json").await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Malformed JSON"),
        "{b}"
    );
    let (s, b) = send(
        br#"{"auth": {"identity": {"methods": "password"}}}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auth.identity.methods"),
        "{b}"
    );
    let (s, b) = send(Vec::new(), "application/json").await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    let (s, b) = send(b"{}".to_vec(), "text/plain").await;
    assert_keystone_error(s, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut big = br#"{"auth": {"pad": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    big.extend(br#""}}"#);
    let (s, b) = send(big, "application/json").await;
    assert_keystone_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE);

    // Wrong types on a resource body name the field.
    let admin = c.admin_token().await;
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3/projects",
            json!({"project": {"name": 5}}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("project.name"),
        "{b}"
    );
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3/projects",
            json!({"project": {"name": ""}}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    let (s, b) = c.get(&admin, "/identity/v3/users?enabled=maybe").await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    // Nothing was created by any of the above.
    let (_, b) = c.get(&admin, "/identity/v3/projects").await;
    assert_eq!(b["projects"].as_array().map(Vec::len), Some(2), "{b}");
}
on_both_stores!(malformed_bodies_get_clear_4xx);

async fn routing_errors_in_keystone_format(c: &TestCloud) {
    let admin = c.admin_token().await;
    let (s, h, b) = c
        .call(Method::GET, "/identity/v3/nope", Some(&admin), None)
        .await;
    assert_keystone_error(s, &b, StatusCode::NOT_FOUND);
    assert!(h
        .get("x-openstack-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("req-"));
    let (s, _, b) = c
        .call(Method::PUT, "/identity/v3/projects", Some(&admin), None)
        .await;
    assert_keystone_error(s, &b, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _, b) = c.call(Method::GET, "/nothing-here", None, None).await;
    assert_keystone_error(s, &b, StatusCode::NOT_FOUND);
    // No token, garbage token.
    let (s, h, b) = c
        .call(Method::GET, "/identity/v3/projects", None, None)
        .await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    assert!(h.contains_key("www-authenticate"));
    let (s, b) = c.get("garbage", "/identity/v3/projects").await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    // Discovery.
    let (s, _, b) = c.call(Method::GET, "/identity", None, None).await;
    assert_eq!(s, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(
        b["versions"]["values"][0]["links"][0]["href"],
        format!("{}/identity/v3/", c.url)
    );
    let (s, _, b) = c.call(Method::GET, "/identity/v3", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["version"]["status"], "stable");
}
on_both_stores!(routing_errors_in_keystone_format);

async fn tampered_revoked_tokens_are_rejected(c: &TestCloud) {
    let admin = c.admin_token().await;
    // Every single-character change of the token is rejected.
    let mut tampered = admin.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (s, b) = c.get(&tampered, "/identity/v3/projects").await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);

    // Revocation: the subject stops working at once, the caller's other tokens do not.
    let victim = c.admin_token().await;
    let r = c
        .http
        .delete(format!("{}/identity/v3/auth/tokens", c.url))
        .header("X-Auth-Token", &admin)
        .header("X-Subject-Token", &victim)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, b) = c.get(&victim, "/identity/v3/projects").await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    let r = c
        .http
        .get(format!("{}/identity/v3/auth/tokens", c.url))
        .header("X-Auth-Token", &admin)
        .header("X-Subject-Token", &victim)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (s, _) = c.get(&admin, "/identity/v3/projects").await;
    assert_eq!(s, StatusCode::OK);
}
on_both_stores!(tampered_revoked_tokens_are_rejected);

async fn disabling_a_user_and_changing_a_password_revoke_tokens(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "u1", "first-pw").await;
    let t1 = c.token_for("u1", "first-pw", None).await;
    let me = format!("/identity/v3/users/{uid}");
    let (s, _) = c.get(&t1, &me).await;
    assert_eq!(s, StatusCode::OK);

    // Self-service password change: old token and old password stop working.
    let (s, b) = c
        .post(
            &t1,
            &format!("{me}/password"),
            json!({"user": {"password": "second-pw", "original_password": "first-pw"}}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = c.get(&t1, &me).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    let (s, _, b) = c.auth(password_auth("u1", "first-pw", None)).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    let t2 = c.token_for("u1", "second-pw", None).await;

    // Disable: existing token and new authentication are refused; re-enabling does not revive it.
    let (s, _, b) = c
        .call(
            Method::PATCH,
            &me,
            Some(&admin),
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["enabled"], false);
    let (s, b) = c.get(&t2, &me).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    let (s, _, b) = c.auth(password_auth("u1", "second-pw", None)).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    let (s, _, _) = c
        .call(
            Method::PATCH,
            &me,
            Some(&admin),
            Some(json!({"user": {"enabled": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = c.get(&t2, &me).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    c.token_for("u1", "second-pw", None).await;
}
on_both_stores!(disabling_a_user_and_changing_a_password_revoke_tokens);

async fn projects_users_groups_crud(c: &TestCloud) {
    let admin = c.admin_token().await;
    // Projects.
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3/projects",
            json!({"project": {"name": "p1", "description": "d"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let pid = b["project"]["id"].as_str().unwrap().to_string();
    assert_eq!(b["project"]["domain_id"], "default");
    assert_eq!(
        b["project"]["links"]["self"],
        format!("{}/identity/v3/projects/{pid}", c.url)
    );
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3/projects",
            json!({"project": {"name": "p1"}}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::CONFLICT);
    let (_, b) = c.get(&admin, "/identity/v3/projects?name=p1").await;
    assert_eq!(b["projects"].as_array().unwrap().len(), 1);
    let (s, _, b) = c
        .call(
            Method::PATCH,
            &format!("/identity/v3/projects/{pid}"),
            Some(&admin),
            Some(json!({"project": {"enabled": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["project"]["enabled"], false);
    let (_, b) = c.get(&admin, "/identity/v3/projects?enabled=false").await;
    assert_eq!(b["projects"][0]["id"], pid.as_str());

    // Users and groups.
    let uid = c.create_user(&admin, "u1", "pw").await;
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3/users",
            json!({"user": {"name": "u1"}}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::CONFLICT);
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3/groups",
            json!({"group": {"name": "g1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let gid = b["group"]["id"].as_str().unwrap().to_string();
    let member = format!("/identity/v3/groups/{gid}/users/{uid}");
    let (s, _) = c.head(&admin, &member).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = c.call(Method::PUT, &member, Some(&admin), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c.head(&admin, &member).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, b) = c
        .get(&admin, &format!("/identity/v3/groups/{gid}/users"))
        .await;
    assert_eq!(b["users"][0]["id"], uid.as_str());
    let (_, b) = c
        .get(&admin, &format!("/identity/v3/users/{uid}/groups"))
        .await;
    assert_eq!(b["groups"][0]["id"], gid.as_str());
    let (s, _) = c.delete(&admin, &member).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c.delete(&admin, &member).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, b) = c
        .call(
            Method::PUT,
            &format!("/identity/v3/groups/{gid}/users/nope"),
            Some(&admin),
            None,
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::NOT_FOUND);

    // A user without Security Administrator may read itself but not administer.
    let t = c.token_for("u1", "pw", None).await;
    let (s, _) = c.get(&t, &format!("/identity/v3/users/{uid}")).await;
    assert_eq!(s, StatusCode::OK);
    for (m, path) in [
        (Method::GET, "/identity/v3/projects".to_string()),
        (Method::GET, "/identity/v3/users".to_string()),
        (Method::GET, format!("/identity/v3/groups/{gid}")),
        (Method::DELETE, format!("/identity/v3/projects/{pid}")),
    ] {
        let (s, _, b) = c.call(m, &path, Some(&t), None).await;
        assert_keystone_error(s, &b, StatusCode::FORBIDDEN);
    }

    // Deletes.
    for path in [
        format!("/identity/v3/groups/{gid}"),
        format!("/identity/v3/users/{uid}"),
        format!("/identity/v3/projects/{pid}"),
    ] {
        let (s, b) = c.delete(&admin, &path).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{path}: {b}");
        let (s, b) = c.get(&admin, &path).await;
        assert_keystone_error(s, &b, StatusCode::NOT_FOUND);
    }
    // The deleted user's token no longer works.
    let (s, b) = c.get(&t, "/identity/v3/auth/projects").await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
}
on_both_stores!(projects_users_groups_crud);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_rejected() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.token_expiration = 1)
        .await
        .expect("sqlite always available");
    let t = c.admin_token().await;
    let (s, _) = c.get(&t, "/identity/v3/auth/projects").await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, b) = c.get(&t, "/identity/v3/auth/projects").await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_revocations_hold_across_nodes_on_postgres() {
    let Some(a) = TestCloud::start(Backend::Postgres).await else {
        return;
    };
    let b = a.second_node().await.expect("postgres backend");
    assert!(
        b.admin_password.is_none(),
        "the second node must not bootstrap again"
    );
    let on_b = |token: String, path: String| {
        let http = a.http.clone();
        let url = format!("{}{}", b.public_url, path);
        async move {
            http.get(url)
                .header("X-Auth-Token", token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // A token issued by node A validates on node B.
    let admin = a.admin_token().await;
    assert_eq!(
        on_b(admin.clone(), "/identity/v3/projects".into()).await,
        StatusCode::OK
    );
    // A revocation through node A applies on node B at the next request.
    let victim = a.admin_token().await;
    assert_eq!(
        on_b(victim.clone(), "/identity/v3/projects".into()).await,
        StatusCode::OK
    );
    let r = a
        .http
        .delete(format!("{}/identity/v3/auth/tokens", a.url))
        .header("X-Auth-Token", &admin)
        .header("X-Subject-Token", &victim)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        on_b(victim, "/identity/v3/projects".into()).await,
        StatusCode::UNAUTHORIZED
    );
    // So does disabling a user.
    let uid = a.create_user(&admin, "u1", "pw").await;
    let t = a.token_for("u1", "pw", None).await;
    let me = format!("/identity/v3/users/{uid}");
    assert_eq!(on_b(t.clone(), me.clone()).await, StatusCode::OK);
    let (s, _, _) = a
        .call(
            Method::PATCH,
            &me,
            Some(&admin),
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(on_b(t, me).await, StatusCode::UNAUTHORIZED);
    b.shutdown().await.unwrap();
    a.stop().await;
}

/// The key id a token was made with (bytes 1..5 of its decoded form).
fn key_of(token: &str) -> u32 {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap();
    u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]])
}

async fn token_valid(c: &TestCloud, admin: &str, subject: &str) -> StatusCode {
    let r = c
        .http
        .get(format!("{}/identity/v3/auth/tokens", c.url))
        .header("X-Auth-Token", admin)
        .header("X-Subject-Token", subject)
        .send()
        .await
        .unwrap();
    r.status()
}

/// `stratus token rotate`: a new primary key, old tokens valid until their keys are pruned
/// (once every token made with them has expired).
async fn token_keys_rotate(c: &TestCloud) {
    let old = c.admin_token().await;
    assert_eq!(key_of(&old), 1);
    let r = stratus_services::identity::rotate_token_keys(c.store(), 3600)
        .await
        .unwrap();
    assert_eq!(
        (r.primary, r.kept.as_slice(), r.pruned.as_slice()),
        (2, &[1][..], &[][..])
    );
    let new = c.admin_token().await;
    assert_eq!(
        key_of(&new),
        2,
        "new tokens are made with the new primary key"
    );
    assert_eq!(token_valid(c, &new, &old).await, StatusCode::OK);
    assert_eq!(token_valid(c, &old, &new).await, StatusCode::OK);
    // Key 1 was retired when key 2 was made; make that longer ago than a token lives.
    let mut w = c.store().write().await.unwrap();
    sqlx::query("UPDATE token_keys SET created_at = created_at - $1 WHERE id = 2")
        .bind(3_700_000_000i64)
        .execute(w.conn())
        .await
        .unwrap();
    c.store().commit(w).await.unwrap();
    let r = stratus_services::identity::rotate_token_keys(c.store(), 3600)
        .await
        .unwrap();
    assert_eq!(
        (r.primary, r.kept.as_slice(), r.pruned.as_slice()),
        (3, &[2][..], &[1][..])
    );
    // (an invalid subject token is a 404, as upstream)
    assert_eq!(token_valid(c, &new, &old).await, StatusCode::NOT_FOUND);
    let (s, _) = c.get(&old, "/identity/v3/auth/projects").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(token_valid(c, &new, &new).await, StatusCode::OK);
    assert_eq!(key_of(&c.admin_token().await), 3);

    // The operator command, against the running cloud's store.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stratus"));
    cmd.args([
        "token",
        "rotate",
        "--token-expiration",
        "3600",
        "--data-dir",
    ])
    .arg(&c.config.data_dir);
    if let Some(url) = &c.config.database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("new primary token key: 4"), "{text}");
    assert!(
        text.contains("older keys kept (tokens made with them may be unexpired): 2, 3"),
        "{text}"
    );
    if c.config.database_url.is_some() {
        // On a shared store the rotation reaches every node at its next request.
        assert_eq!(key_of(&c.admin_token().await), 4);
    }
    assert_eq!(token_valid(c, &new, &new).await, StatusCode::OK);
}
on_both_stores!(token_keys_rotate);

async fn role_assignments_as_keystone_lists_them(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "ra-user", "pw").await;
    let gid = c.group_with(&admin, "ra-group", &uid).await;
    let p1 = {
        let (s, b) = c
            .post(
                &admin,
                "/identity/v3/projects",
                json!({"project": {"name": "ra-p1"}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["project"]["id"].as_str().unwrap().to_string()
    };
    let ecs = c.role_id(&admin, "system_all_ecs_full").await;
    let guest = c.role_id(&admin, "te_guest").await;
    c.grant_project(&admin, &p1, &gid, &ecs).await;
    c.grant(&admin, &format!("/identity/v3/OS-INHERIT/domains/default/groups/{gid}/roles/{guest}/inherited_to_projects")).await;
    let list = |q: &str| {
        let (admin, q) = (admin.clone(), q.to_string());
        async move {
            let (s, b) = c
                .get(&admin, &format!("/identity/v3/role_assignments{q}"))
                .await;
            (s, b)
        }
    };
    let (s, b) = list(&format!("?group.id={gid}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut got = b["role_assignments"].as_array().unwrap().clone();
    got.sort_by_key(|a| a["role"]["id"].as_str().unwrap().to_string());
    let want_project = json!({"role": {"id": ecs}, "group": {"id": gid}, "scope": {"project": {"id": p1}},
        "links": {"assignment": format!("{}/identity/v3/projects/{p1}/groups/{gid}/roles/{ecs}", c.url)}});
    let want_inherited = json!({"role": {"id": guest}, "group": {"id": gid},
        "scope": {"domain": {"id": "default"}, "OS-INHERIT:inherited_to": "projects"},
        "links": {"assignment": format!("{}/identity/v3/OS-INHERIT/domains/default/groups/{gid}/roles/{guest}/inherited_to_projects", c.url)}});
    let mut want = vec![want_project, want_inherited];
    want.sort_by_key(|a| a["role"]["id"].as_str().unwrap().to_string());
    assert_eq!(got, want);
    assert_eq!(
        b["links"]["self"],
        format!("{}/identity/v3/role_assignments?group.id={gid}", c.url)
    );
    // Only inherited ones; only direct ones.
    let (_, b) = list(&format!(
        "?group.id={gid}&scope.OS-INHERIT:inherited_to=projects"
    ))
    .await;
    assert_eq!(b["role_assignments"].as_array().unwrap().len(), 1);
    let (_, b) = list(&format!("?scope.project.id={p1}")).await;
    assert_eq!(b["role_assignments"][0]["role"]["id"], ecs.as_str());
    // Effective: the user holds the group's roles, the inherited one on every project.
    let (_, b) = list(&format!("?user.id={uid}&effective")).await;
    let eff = b["role_assignments"].as_array().unwrap();
    assert!(
        eff.iter()
            .all(|a| a["user"]["id"] == uid.as_str() && a["group"].is_null()),
        "{b}"
    );
    let on_p1: Vec<&Value> = eff
        .iter()
        .filter(|a| a["scope"]["project"]["id"] == p1.as_str())
        .collect();
    assert_eq!(
        on_p1.len(),
        2,
        "ECS on p1 and the inherited guest role: {b}"
    );
    let projects = c.get(&admin, "/identity/v3/projects").await.1["projects"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(eff.len(), 1 + projects, "{b}");
    let from_group = on_p1
        .iter()
        .find(|a| a["role"]["id"] == ecs.as_str())
        .unwrap();
    assert_eq!(
        from_group["links"]["membership"],
        format!("{}/identity/v3/groups/{gid}/users/{uid}", c.url)
    );
    // Names.
    let (_, b) = list(&format!(
        "?group.id={gid}&scope.project.id={p1}&include_names"
    ))
    .await;
    let a = &b["role_assignments"][0];
    assert_eq!(
        (
            a["role"]["name"].as_str(),
            a["group"]["name"].as_str(),
            a["group"]["domain"]["name"].as_str(),
            a["scope"]["project"]["name"].as_str(),
            a["scope"]["project"]["domain"]["name"].as_str()
        ),
        (
            Some("system_all_ecs_full"),
            Some("ra-group"),
            Some("Default"),
            Some("ra-p1"),
            Some("Default")
        )
    );
    // Filters upstream refuses together.
    for q in [
        format!("?user.id={uid}&group.id={gid}"),
        format!("?scope.project.id={p1}&scope.domain.id=default"),
        format!("?effective&group.id={gid}"),
        "?include_subtree".to_string(),
    ] {
        let (s, b) = list(&q).await;
        assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    }
    let (s, b) = list("?scope.system=all").await;
    assert_eq!(
        (s, b["role_assignments"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    // It needs its action.
    let t = c.token_for("ra-user", "pw", Some("ra-p1")).await;
    let (s, b) = c.get(&t, "/identity/v3/role_assignments").await;
    assert_keystone_error(s, &b, StatusCode::FORBIDDEN);
}
on_both_stores!(role_assignments_as_keystone_lists_them);

async fn application_credentials(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "ac-user", "pw").await;
    let gid = c.group_with(&admin, "ac-group", &uid).await;
    let demo = c.project_id(&admin, "demo").await;
    let ecs_ro = c.role_id(&admin, "system_all_ecs_readonly").await;
    let ims = c.role_id(&admin, "system_all_ims_full").await;
    for r in [&ecs_ro, &ims] {
        c.grant_project(&admin, &demo, &gid, r).await;
    }
    let t = c.token_for("ac-user", "pw", Some("demo")).await;
    let base = format!("/identity/v3/users/{uid}/application_credentials");
    let create = |body: Value| {
        let (t, base) = (t.clone(), base.clone());
        async move {
            c.call(
                Method::POST,
                &base,
                Some(&t),
                Some(json!({"application_credential": body})),
            )
            .await
        }
    };
    // Only roles the user holds on the project.
    let te_admin = c.role_id(&admin, "te_admin").await;
    let (s, _, b) = create(json!({"name": "too-much", "roles": [{"id": te_admin}]})).await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    // What the SDK sends for a bare create (unset fields as null or empty).
    let (s, _, b) = create(
        json!({"name": "all", "roles": [], "expires_at": null, "description": null,
                                  "secret": null, "unrestricted": false, "access_rules": []}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let all = &b["application_credential"];
    let secret = all["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 64);
    assert_eq!(
        (all["project_id"].as_str(), all["unrestricted"].as_bool()),
        (Some(demo.as_str()), Some(false))
    );
    assert_eq!(all["roles"].as_array().unwrap().len(), 2);
    let all_id = all["id"].as_str().unwrap().to_string();
    let (s, _, b) = create(json!({"name": "all"})).await;
    assert_keystone_error(s, &b, StatusCode::CONFLICT);
    // The secret is shown once.
    let (s, b) = c.get(&t, &format!("{base}/{all_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["application_credential"].get("secret").is_none());
    let (_, b) = c.get(&t, &format!("{base}?name=all")).await;
    assert_eq!(b["application_credentials"].as_array().unwrap().len(), 1);

    let auth = |id: &str, secret: &str, scope: Option<Value>| {
        let mut body = json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret}}}});
        if let Some(s) = scope {
            body["auth"]["scope"] = s;
        }
        body
    };
    let (s, tok, b) = c.auth(auth(&all_id, &secret, None)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let ac_token = tok.unwrap();
    assert_eq!(b["token"]["methods"], json!(["application_credential"]));
    assert_eq!(b["token"]["project"]["id"], demo.as_str());
    assert_eq!(
        b["token"]["application_credential"],
        json!({"id": all_id, "name": "all", "restricted": true})
    );
    // By name and user, too.
    let (s, _, _) = c.auth(json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"name": "all", "secret": secret, "user": {"name": "ac-user", "domain": {"name": "Default"}}}}}})).await;
    assert_eq!(s, StatusCode::CREATED);
    for bad in [
        auth(&all_id, "wrong", None),
        auth("nope", &secret, None),
        auth(&all_id, &secret, Some(json!({"project": {"id": demo}}))),
    ] {
        let (s, _, b) = c.auth(bad).await;
        assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    }
    // The token acts as its user, within the credential's roles.
    let (s, _) = c.get(&ac_token, "/image/v2/images").await;
    assert_eq!(s, StatusCode::OK);
    // A restricted credential's token cannot make more credentials.
    let (s, b) = c
        .post(
            &ac_token,
            &base,
            json!({"application_credential": {"name": "x"}}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::FORBIDDEN);
    // Nor an access key (which acts as the whole user), nor change or remove the user's key.
    let keys = "/identity/v3.0/OS-CREDENTIAL/credentials";
    let (s, b) = c
        .post(&t, keys, json!({"credential": {"user_id": uid}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let key = format!("{keys}/{}", b["credential"]["access"].as_str().unwrap());
    let (s, _) = c
        .post(&ac_token, keys, json!({"credential": {"user_id": uid}}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = c
        .call(
            Method::PUT,
            &key,
            Some(&ac_token),
            Some(json!({"credential": {"status": "inactive"}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(c.delete(&ac_token, &key).await.0, StatusCode::FORBIDDEN);
    let (_, b) = c.get(&t, &format!("{keys}?user_id={uid}")).await;
    assert_eq!(b["credentials"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["credentials"][0]["status"], "active", "{b}");

    // Fewer roles: the token has only those.
    let (s, _, b) =
        create(json!({"name": "ro", "roles": [{"name": "system_all_ecs_readonly"}]})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (ro_id, ro_secret) = (
        b["application_credential"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        b["application_credential"]["secret"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let (_, tok, b) = c.auth(auth(&ro_id, &ro_secret, None)).await;
    assert_eq!(b["token"]["roles"].as_array().unwrap().len(), 1, "{b}");
    let ro_token = tok.unwrap();
    let (s, _) = c
        .post(&ro_token, "/image/v2/images", json!({"name": "x"}))
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "IMS FullAccess is not the credential's"
    );
    let (s, _) = c.post(&t, "/image/v2/images", json!({"name": "x"})).await;
    assert_eq!(s, StatusCode::CREATED, "the user has it");

    // Access rules: only the calls named.
    let (s, _, b) = create(json!({"name": "rules", "secret": "my-secret-123",
        "access_rules": [{"service": "image", "method": "GET", "path": "/v2/images"}],
        "expires_at": "2999-01-01T00:00:00"}))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let rules = &b["application_credential"];
    assert_eq!(rules["secret"], "my-secret-123");
    assert_eq!(rules["expires_at"], "2999-01-01T00:00:00.000000");
    let (_, tok, b) = c
        .auth(auth(rules["id"].as_str().unwrap(), "my-secret-123", None))
        .await;
    assert_eq!(
        b["token"]["application_credential"]["access_rules"][0]["path"],
        "/v2/images"
    );
    let rt = tok.unwrap();
    let (s, _) = c.get(&rt, "/image/v2/images").await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = c
        .get(
            &rt,
            &format!("/image/v2/images/{}", stratus_services::demo::DEMO_IMAGE_ID),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, _) = c.get(&rt, "/compute/v2.1/servers").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for bad in [
        json!({"name": "b1", "access_rules": [{"service": "image", "method": "FETCH", "path": "/v2"}]}),
        json!({"name": "b2", "access_rules": [{"service": "image", "method": "GET", "path": "v2"}]}),
        json!({"name": "b3", "expires_at": "2000-01-01T00:00:00"}),
        json!({"name": "b4", "expires_at": "yesterday"}),
        json!({"name": "b5", "project_id": demo}),
        json!({"name": ""}),
    ] {
        let (s, _, b) = create(bad.clone()).await;
        assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    }
    // Not for another user, even by an administrator.
    let (s, b) = c
        .post(
            &admin,
            &base,
            json!({"application_credential": {"name": "x"}}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::FORBIDDEN);
    // Losing the role: the token of a credential made only of it stops working.
    c.call(
        Method::DELETE,
        &format!("/identity/v3/projects/{demo}/groups/{gid}/roles/{ecs_ro}"),
        Some(&admin),
        None,
    )
    .await;
    let (s, _) = c.get(&ro_token, "/image/v2/images").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Deleted: its tokens stop at once; the others stay.
    let (s, _) = c.delete(&t, &format!("{base}/{all_id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c.get(&ac_token, "/image/v2/images").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = c.get(&rt, "/image/v2/images").await;
    assert_eq!(s, StatusCode::OK);
    // Deleting the user deletes its credentials.
    c.call(
        Method::DELETE,
        &format!("/identity/v3/users/{uid}"),
        Some(&admin),
        None,
    )
    .await;
    let (s, _) = c.get(&rt, "/image/v2/images").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM application_credentials")
        .fetch_one(c.store().pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}
on_both_stores!(application_credentials);

/// An unknown user costs a password check, as a wrong password does: the time of the answer
/// does not tell which names exist.
async fn unknown_users_cost_a_password_check(c: &TestCloud) {
    let admin = c.admin_token().await;
    c.create_user(&admin, "known", "pw").await;
    let count = stratus_services::password::verifications;
    for (user, pw) in [("known", "wrong"), ("nobody-at-all", "wrong")] {
        let before = count();
        let (s, _, b) = c.auth(password_auth(user, pw, None)).await;
        assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
        assert_eq!(count() - before, 1, "{user}: one argon2id verification");
    }
}
on_both_stores!(unknown_users_cost_a_password_check);

/// Tokens are scoped only to projects the user holds a grant on (the project, all projects, or
/// an enterprise project), and `GET /auth/projects` lists just those; disabling a project
/// revokes its tokens for good.
async fn project_scopes_need_grants_and_disabling_revokes(c: &TestCloud) {
    let admin = c.admin_token().await;
    let mk = |name: &'static str| {
        let admin = admin.clone();
        async move {
            let (s, b) = c
                .post(
                    &admin,
                    "/identity/v3/projects",
                    json!({"project": {"name": name}}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            b["project"]["id"].as_str().unwrap().to_string()
        }
    };
    let (p1, p2) = (mk("scope-p1").await, mk("scope-p2").await);
    let uid = c.create_user(&admin, "scoped", "pw").await;
    c.project_member(&admin, &uid, &p1).await;
    let scoped = |project: &str| {
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "scoped", "domain": {"name": "Default"}, "password": "pw"}}},
            "scope": {"project": {"id": project}}}})
    };
    let (s, tok, _) = c.auth(scoped(&p1)).await;
    assert_eq!(s, StatusCode::CREATED);
    let t1 = tok.unwrap();
    let (s, _, b) = c.auth(scoped(&p2)).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    let (_, b) = c.get(&t1, "/identity/v3/auth/projects").await;
    let names: Vec<&str> = b["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["scope-p1"]);
    let (_, b) = c
        .get(&admin, &format!("/identity/v3/users/{uid}/projects"))
        .await;
    assert_eq!(b["projects"].as_array().unwrap().len(), 1, "{b}");

    // A grant on an enterprise project makes every project usable.
    let (_, ep) = c
        .post(
            &admin,
            "/identity/v3.0/enterprise-projects",
            json!({"name": "scope-ep"}),
        )
        .await;
    let ep = ep["enterprise_project"]["id"].as_str().unwrap().to_string();
    let gid = c.group_with(&admin, "scope-ep-g", &uid).await;
    let guest = c.role_id(&admin, "te_guest").await;
    c.grant(
        &admin,
        &format!(
            "/identity/v3.0/OS-PERMISSION/enterprise-projects/{ep}/groups/{gid}/roles/{guest}"
        ),
    )
    .await;
    let (s, _, _) = c.auth(scoped(&p2)).await;
    assert_eq!(s, StatusCode::CREATED);

    // Disabled, the project's tokens are gone; enabled again, they stay gone.
    let patch = |enabled: bool| {
        let (admin, p1) = (admin.clone(), p1.clone());
        async move {
            let (s, _, b) = c
                .call(
                    Method::PATCH,
                    &format!("/identity/v3/projects/{p1}"),
                    Some(&admin),
                    Some(json!({"project": {"enabled": enabled}})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    patch(false).await;
    let (s, _) = c.get(&t1, "/identity/v3/auth/projects").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    patch(true).await;
    let (s, _) = c.get(&t1, "/identity/v3/auth/projects").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "re-enabling does not revive old tokens"
    );
    let (s, tok, _) = c.auth(scoped(&p1)).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = c.get(&tok.unwrap(), "/identity/v3/auth/projects").await;
    assert_eq!(s, StatusCode::OK);
}
on_both_stores!(project_scopes_need_grants_and_disabling_revokes);

/// Login protection (off by default): after three wrong passwords in the window the account is
/// locked, even for the right password, for the lockout's time; other users are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_lock_the_account() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.login_protection = stratus_services::identity::LoginProtection {
            max_failures: 3,
            window_micros: 60_000_000,
            lockout_micros: 2_000_000,
        };
    })
    .await
    .unwrap();
    let admin = c.admin_token().await;
    c.create_user(&admin, "victim", "right").await;
    c.create_user(&admin, "bystander", "right").await;
    for _ in 0..3 {
        let (s, _, _) = c.auth(password_auth("victim", "wrong", None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _, b) = c.auth(password_auth("victim", "right", None)).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    let (s, _, _) = c.auth(password_auth("bystander", "right", None)).await;
    assert_eq!(s, StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, _, _) = c.auth(password_auth("victim", "right", None)).await;
    assert_eq!(s, StatusCode::CREATED, "the lockout ends");
    c.stop().await;

    // Off by default: wrong passwords do not lock.
    let c = TestCloud::start(Backend::Sqlite).await.unwrap();
    let admin = c.admin_token().await;
    c.create_user(&admin, "free", "right").await;
    for _ in 0..6 {
        c.auth(password_auth("free", "wrong", None)).await;
    }
    let (s, _, _) = c.auth(password_auth("free", "right", None)).await;
    assert_eq!(s, StatusCode::CREATED);
    c.stop().await;
}
