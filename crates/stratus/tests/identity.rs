//! The Identity API over real HTTP, on SQLite and PostgreSQL.

mod common;

use common::*;
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
    let (_, _, projects) = c
        .call(
            Method::GET,
            "/identity/v3/projects?name=demo",
            Some(&admin),
            None,
        )
        .await;
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

    // Re-scoping with the token method keeps the expiry.
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
    let (s, _, b) = c
        .call(
            Method::POST,
            "/identity/v3/projects",
            Some(&admin),
            Some(json!({"project": {"name": 5}})),
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
    let (s, _, b) = c
        .call(
            Method::POST,
            "/identity/v3/projects",
            Some(&admin),
            Some(json!({"project": {"name": ""}})),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    let (s, _, b) = c
        .call(
            Method::GET,
            "/identity/v3/users?enabled=maybe",
            Some(&admin),
            None,
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    // Nothing was created by any of the above.
    let (_, _, b) = c
        .call(Method::GET, "/identity/v3/projects", Some(&admin), None)
        .await;
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
    let (s, _, b) = c
        .call(Method::GET, "/identity/v3/projects", Some("garbage"), None)
        .await;
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
    let (s, _, b) = c
        .call(Method::GET, "/identity/v3/projects", Some(&tampered), None)
        .await;
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
    let (s, _, b) = c
        .call(Method::GET, "/identity/v3/projects", Some(&victim), None)
        .await;
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
    let (s, _, _) = c
        .call(Method::GET, "/identity/v3/projects", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
}
on_both_stores!(tampered_revoked_tokens_are_rejected);

async fn disabling_a_user_and_changing_a_password_revoke_tokens(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "u1", "first-pw").await;
    let t1 = c.token_for("u1", "first-pw", None).await;
    let me = format!("/identity/v3/users/{uid}");
    let (s, _, _) = c.call(Method::GET, &me, Some(&t1), None).await;
    assert_eq!(s, StatusCode::OK);

    // Self-service password change: old token and old password stop working.
    let (s, _, b) = c
        .call(
            Method::POST,
            &format!("{me}/password"),
            Some(&t1),
            Some(json!({"user": {"password": "second-pw", "original_password": "first-pw"}})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, _, b) = c.call(Method::GET, &me, Some(&t1), None).await;
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
    let (s, _, b) = c.call(Method::GET, &me, Some(&t2), None).await;
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
    let (s, _, b) = c.call(Method::GET, &me, Some(&t2), None).await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
    c.token_for("u1", "second-pw", None).await;
}
on_both_stores!(disabling_a_user_and_changing_a_password_revoke_tokens);

async fn projects_users_groups_crud(c: &TestCloud) {
    let admin = c.admin_token().await;
    // Projects.
    let (s, _, b) = c
        .call(
            Method::POST,
            "/identity/v3/projects",
            Some(&admin),
            Some(json!({"project": {"name": "p1", "description": "d"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let pid = b["project"]["id"].as_str().unwrap().to_string();
    assert_eq!(b["project"]["domain_id"], "default");
    assert_eq!(
        b["project"]["links"]["self"],
        format!("{}/identity/v3/projects/{pid}", c.url)
    );
    let (s, _, b) = c
        .call(
            Method::POST,
            "/identity/v3/projects",
            Some(&admin),
            Some(json!({"project": {"name": "p1"}})),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::CONFLICT);
    let (_, _, b) = c
        .call(
            Method::GET,
            "/identity/v3/projects?name=p1",
            Some(&admin),
            None,
        )
        .await;
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
    let (_, _, b) = c
        .call(
            Method::GET,
            "/identity/v3/projects?enabled=false",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(b["projects"][0]["id"], pid.as_str());

    // Users and groups.
    let uid = c.create_user(&admin, "u1", "pw").await;
    let (s, _, b) = c
        .call(
            Method::POST,
            "/identity/v3/users",
            Some(&admin),
            Some(json!({"user": {"name": "u1"}})),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::CONFLICT);
    let (s, _, b) = c
        .call(
            Method::POST,
            "/identity/v3/groups",
            Some(&admin),
            Some(json!({"group": {"name": "g1"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let gid = b["group"]["id"].as_str().unwrap().to_string();
    let member = format!("/identity/v3/groups/{gid}/users/{uid}");
    let (s, _, _) = c.call(Method::HEAD, &member, Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = c.call(Method::PUT, &member, Some(&admin), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = c.call(Method::HEAD, &member, Some(&admin), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, b) = c
        .call(
            Method::GET,
            &format!("/identity/v3/groups/{gid}/users"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(b["users"][0]["id"], uid.as_str());
    let (_, _, b) = c
        .call(
            Method::GET,
            &format!("/identity/v3/users/{uid}/groups"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(b["groups"][0]["id"], gid.as_str());
    let (s, _, _) = c.call(Method::DELETE, &member, Some(&admin), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = c.call(Method::DELETE, &member, Some(&admin), None).await;
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
    let (s, _, _) = c
        .call(
            Method::GET,
            &format!("/identity/v3/users/{uid}"),
            Some(&t),
            None,
        )
        .await;
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
        let (s, _, b) = c.call(Method::DELETE, &path, Some(&admin), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{path}: {b}");
        let (s, _, b) = c.call(Method::GET, &path, Some(&admin), None).await;
        assert_keystone_error(s, &b, StatusCode::NOT_FOUND);
    }
    // The deleted user's token no longer works.
    let (s, _, b) = c
        .call(Method::GET, "/identity/v3/auth/projects", Some(&t), None)
        .await;
    assert_keystone_error(s, &b, StatusCode::UNAUTHORIZED);
}
on_both_stores!(projects_users_groups_crud);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_rejected() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| cfg.token_expiration = 1)
        .await
        .expect("sqlite always available");
    let t = c.admin_token().await;
    let (s, _, _) = c
        .call(Method::GET, "/identity/v3/auth/projects", Some(&t), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _, b) = c
        .call(Method::GET, "/identity/v3/auth/projects", Some(&t), None)
        .await;
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
