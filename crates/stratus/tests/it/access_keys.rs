//! IAM access keys (AK/SK) over real HTTP: their lifecycle and limits, requests signed with them
//! on Huawei's endpoints (authorized as a token of the key's user), and every way a signed request
//! fails (401, nothing done).

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stratus_services::signing::{self, WireRequest};

const KEYS: &str = "/identity/v3.0/OS-CREDENTIAL/credentials";

struct Key {
    access: String,
    secret: String,
}

/// A request to sign and send: method, endpoint URL, path and query as sent, headers, body.
struct Signed<'a> {
    method: Method,
    base: &'a str,
    path: &'a str,
    query: &'a str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl<'a> Signed<'a> {
    fn new(method: Method, base: &'a str, path: &'a str) -> Self {
        Signed {
            method,
            base,
            path,
            query: "",
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_ascii_lowercase(), v.to_string()));
        self
    }

    fn json(mut self, v: &Value) -> Self {
        self.body = v.to_string().into_bytes();
        self.header("content-type", "application/json")
    }

    /// Signs every header (with `X-Sdk-Date` of `at` and the endpoint's host) as the SDK does.
    fn sign(mut self, key: &Key, secret: &str, at: i64) -> Self {
        let host = self.base.trim_start_matches("http://").to_string();
        self = self
            .header("host", &host)
            .header("x-sdk-date", &signing::format_date(at).expect("date"));
        let hash = signing::sha256_hex(&self.body);
        let mut names: Vec<String> = self.headers.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let headers = self.headers.clone();
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        let auth = signing::sign(
            &key.access,
            secret.as_bytes(),
            &WireRequest {
                method: self.method.as_str(),
                path: self.path,
                query: self.query,
                header: &header,
                payload_sha256: Some(&hash),
            },
            &names,
        )
        .expect("signs");
        self.header("authorization", &auth)
    }

    async fn send(&self, c: &TestCloud) -> (StatusCode, Value) {
        let q = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        let mut req = c
            .http
            .request(
                self.method.clone(),
                format!("{}{}{q}", self.base, self.path),
            )
            .body(self.body.clone());
        for (k, v) in &self.headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn new_key(c: &TestCloud, t: &str, user_id: &str) -> Key {
    let (s, b) = c
        .post(
            t,
            KEYS,
            json!({"credential": {"user_id": user_id, "description": "k"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let k = &b["credential"];
    assert_eq!(k["status"], "active");
    assert_eq!(k["user_id"], user_id);
    Key {
        access: k["access"].as_str().expect("access").to_string(),
        secret: k["secret"].as_str().expect("secret").to_string(),
    }
}

async fn user_id(c: &TestCloud, admin: &str, name: &str) -> String {
    let (s, b) = c
        .get(admin, &format!("/identity/v3/users?name={name}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["users"][0]["id"].as_str().expect("id").to_string()
}

async fn disable_user(c: &TestCloud, admin: &str, uid: &str) {
    let (s, _, b) = c
        .call(
            Method::PATCH,
            &format!("/identity/v3/users/{uid}"),
            Some(admin),
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn key_count(c: &TestCloud, admin: &str, uid: &str) -> usize {
    let (s, b) = c.get(admin, &format!("{KEYS}?user_id={uid}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["credentials"].as_array().expect("list").len()
}

async fn access_keys_lifecycle(c: &TestCloud) {
    let admin = c.admin_token().await;
    let alice = c.demo_member("alice", &["ECS ReadOnlyAccess"], &[]).await;
    let bob = c.demo_member("bob", &["ECS ReadOnlyAccess"], &[]).await;
    let alice_id = user_id(c, &admin, "alice").await;

    // A user makes her own keys without any policy; the secret is shown once.
    let k1 = new_key(c, &alice, &alice_id).await;
    assert_eq!((k1.access.len(), k1.secret.len()), (20, 40));
    assert!(k1
        .access
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    let k2 = new_key(c, &alice, &alice_id).await;
    let (s, b) = c
        .post(&alice, KEYS, json!({"credential": {"user_id": alice_id}}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a third key: {b}");
    assert_eq!(b["error"]["message"], "akSkNumExceed");
    let (s, b) = c.get(&alice, KEYS).await;
    assert_eq!(s, StatusCode::OK);
    let listed = b["credentials"].as_array().expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.get("secret").is_none()), "{b}");
    let (s, b) = c.get(&alice, &format!("{KEYS}/{}", k1.access)).await;
    assert_eq!(
        (s, &b["credential"]["access"]),
        (StatusCode::OK, &json!(k1.access))
    );
    assert!(b["credential"].get("secret").is_none());

    // Another user of the domain needs a policy to touch them; the admin has one.
    let (s, b) = c.get(&bob, &format!("{KEYS}/{}", k1.access)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = c.delete(&bob, &format!("{KEYS}/{}", k2.access)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(key_count(c, &admin, &alice_id).await, 2);
    let (s, _) = c.get(&admin, &format!("{KEYS}/{}", k1.access)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = c.get(&admin, &format!("{KEYS}/NOSUCHKEY0000000000")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = c
        .put(
            &alice,
            &format!("{KEYS}/{}", k1.access),
            json!({"credential": {"status": "off"}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // Signed with the key on Huawei's endpoints: the user, as her token would be.
    let demo = c.project_id(&admin, "demo").await;
    let iam = c.huawei_url("iam");
    let ecs = c.huawei_url("ecs");
    let own_keys = || {
        Signed::new(Method::GET, &iam, "/v3.0/OS-CREDENTIAL/credentials")
            .header("x-domain-id", "default")
    };
    let (s, b) = own_keys().sign(&k1, &k1.secret, now()).send(c).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["credentials"].as_array().map(Vec::len), Some(2));
    let servers = format!("/v2.1/{demo}/servers");
    let (s, b) = Signed::new(Method::GET, &ecs, &servers)
        .header("x-project-id", &demo)
        .sign(&k2, &k2.secret, now())
        .send(c)
        .await;
    assert_eq!(s, StatusCode::OK, "ECS ReadOnlyAccess lists servers: {b}");
    let (s, b) = Signed::new(Method::POST, &ecs, &servers)
        .header("x-project-id", &demo)
        .json(&json!({"server": {"name": "x", "imageRef": "y", "flavorRef": "1"}}))
        .sign(&k2, &k2.secret, now())
        .send(c)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "but creates none: {b}");
    assert!(b.to_string().contains("ecs:servers:create"), "{b}");
    // A project the user has no grant on is refused as a token scoped to it would be.
    let admin_project = c.project_id(&admin, "admin").await;
    let (s, _) = Signed::new(Method::GET, &ecs, &format!("/v2.1/{admin_project}/servers"))
        .header("x-project-id", &admin_project)
        .sign(&k2, &k2.secret, now())
        .send(c)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Inactive: refused until active again.
    let one = format!("{KEYS}/{}", k1.access);
    let (s, b) = c
        .put(
            &alice,
            &one,
            json!({"credential": {"status": "inactive", "description": "off"}}),
        )
        .await;
    assert_eq!(
        (s, &b["credential"]["status"]),
        (StatusCode::OK, &json!("inactive"))
    );
    let (s, _) = own_keys().sign(&k1, &k1.secret, now()).send(c).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "inactive key");
    let (s, _) = c
        .put(&alice, &one, json!({"credential": {"status": "active"}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let replay = own_keys().sign(&k1, &k1.secret, now());
    assert_eq!(replay.send(c).await.0, StatusCode::OK);

    // Deleted: the very request that worked, sent again, is refused.
    let (s, _) = c.delete(&alice, &one).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        replay.send(c).await.0,
        StatusCode::UNAUTHORIZED,
        "replayed after delete"
    );
    assert_eq!(c.get(&alice, &one).await.0, StatusCode::NOT_FOUND);

    // A disabled user's keys authenticate nothing.
    let (s, _) = own_keys().sign(&k2, &k2.secret, now()).send(c).await;
    assert_eq!(s, StatusCode::OK);
    disable_user(c, &admin, &alice_id).await;
    let (s, _) = own_keys().sign(&k2, &k2.secret, now()).send(c).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "disabled user");

    // A deleted user's keys go with it.
    let (s, _) = c
        .delete(&admin, &format!("/identity/v3/users/{alice_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(&admin, &format!("{KEYS}/{}", k2.access)).await.0,
        StatusCode::NOT_FOUND
    );
}
on_both_stores!(access_keys_lifecycle);

async fn signatures_that_do_not_hold_are_refused(c: &TestCloud) {
    let admin = c.admin_token().await;
    let t = c.demo_member("carol", &["ECS ReadOnlyAccess"], &[]).await;
    let uid = user_id(c, &admin, "carol").await;
    let k = new_key(c, &t, &uid).await;
    let iam = c.huawei_url("iam");
    // Each would make a second key if it were accepted.
    let create = || {
        Signed::new(Method::POST, &iam, "/v3.0/OS-CREDENTIAL/credentials")
            .header("x-domain-id", "default")
            .json(&json!({"credential": {"user_id": uid, "description": "signed"}}))
    };
    let mut wrong = k.secret.clone();
    wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
    let mut altered_body = create().sign(&k, &k.secret, now());
    altered_body.body = json!({"credential": {"user_id": uid, "description": "other"}})
        .to_string()
        .into_bytes();
    let mut altered_query = create().sign(&k, &k.secret, now());
    altered_query.query = "x=1";
    let mut altered_header = create().sign(&k, &k.secret, now());
    for (h, v) in altered_header.headers.iter_mut() {
        if h == "x-domain-id" {
            *v = "other".into();
        }
    }
    let mut unsigned_scope = create().sign(&k, &k.secret, now());
    unsigned_scope
        .headers
        .push(("x-project-id".into(), "p".into()));
    let cases: Vec<(&str, Signed)> = vec![
        ("wrong secret", create().sign(&k, &wrong, now())),
        ("altered body", altered_body),
        ("altered query", altered_query),
        ("altered signed header", altered_header),
        ("scope header outside the signature", unsigned_scope),
        (
            "signed 16 minutes ago",
            create().sign(&k, &k.secret, now() - 960),
        ),
        (
            "signed 16 minutes ahead",
            create().sign(&k, &k.secret, now() + 960),
        ),
        (
            "unknown key",
            create().sign(
                &Key {
                    access: "AAAAAAAAAAAAAAAAAAAA".into(),
                    secret: k.secret.clone(),
                },
                &k.secret,
                now(),
            ),
        ),
    ];
    for (what, req) in cases {
        let (s, b) = req.send(c).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {b}");
        assert_eq!(
            key_count(c, &admin, &uid).await,
            1,
            "{what} changed nothing"
        );
    }
    // The same request, signed as it is sent, is accepted; a header outside the signature may
    // change on the way.
    let (s, b) = create()
        .sign(&k, &k.secret, now())
        .header("user-agent", "changed-after-signing")
        .send(c)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(key_count(c, &admin, &uid).await, 2);
}
on_both_stores!(signatures_that_do_not_hold_are_refused);

async fn temporary_keys_act_with_their_security_token(c: &TestCloud) {
    const STS: &str = "/identity/v3.0/OS-CREDENTIAL/securitytokens";
    let admin = c.admin_token().await;
    let t = c.demo_member("dave", &["ECS ReadOnlyAccess"], &[]).await;
    let uid = user_id(c, &admin, "dave").await;
    let demo = c.project_id(&admin, "demo").await;
    let by_token = json!({"auth": {"identity": {"methods": ["token"]}}});
    for bad in [
        json!({"auth": {"identity": {"methods": ["token"], "token": {"duration_seconds": 899}}}}),
        json!({"auth": {"identity": {"methods": ["token"], "token": {"duration_seconds": 86401}}}}),
        json!({"auth": {"identity": {"methods": ["assume_role"]}}}),
    ] {
        let (s, b) = c.post(&t, STS, bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    let (s, b) = c.post(&t, STS, by_token.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let cred = &b["credential"];
    let key = Key {
        access: cred["access"].as_str().expect("access").into(),
        secret: cred["secret"].as_str().expect("secret").into(),
    };
    let st = cred["securitytoken"]
        .as_str()
        .expect("security token")
        .to_string();
    assert!(
        cred["expires_at"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z')),
        "{b}"
    );
    let ecs = c.huawei_url("ecs");
    let servers = format!("/v2.1/{demo}/servers");
    let list = |with_token: Option<&str>| {
        let r = Signed::new(Method::GET, &ecs, &servers).header("x-project-id", &demo);
        match with_token {
            Some(st) => r.header("x-security-token", st),
            None => r,
        }
    };
    let (s, b) = list(Some(&st)).sign(&key, &key.secret, now()).send(c).await;
    assert_eq!(s, StatusCode::OK, "signed with the temporary key: {b}");
    // Without its security token the key is unknown; the token is no X-Auth-Token either.
    assert_eq!(
        list(None).sign(&key, &key.secret, now()).send(c).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get(&st, &format!("/compute/v2.1/{demo}/servers")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Another key's security token, or the key's with another secret: refused.
    let (_, other) = c.post(&t, STS, by_token.clone()).await;
    let other_st = other["credential"]["securitytoken"]
        .as_str()
        .expect("token");
    assert_eq!(
        list(Some(other_st))
            .sign(&key, &key.secret, now())
            .send(c)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let mut wrong = key.secret.clone();
    wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
    assert_eq!(
        list(Some(&st)).sign(&key, &wrong, now()).send(c).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A temporary key makes no other.
    let (s, _) = Signed::new(
        Method::POST,
        &c.huawei_url("iam"),
        "/v3.0/OS-CREDENTIAL/securitytokens",
    )
    .header("x-domain-id", "default")
    .header("x-security-token", &st)
    .json(&by_token)
    .sign(&key, &key.secret, now())
    .send(c)
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Nor a permanent key, which would outlive it; nor may it change or remove one.
    let perm = new_key(c, &t, &uid).await;
    let iam = c.huawei_url("iam");
    let creds = "/v3.0/OS-CREDENTIAL/credentials";
    let one = format!("{creds}/{}", perm.access);
    let app_creds = format!("/v3/users/{uid}/application_credentials");
    for (method, path, body) in [
        (Method::POST, creds, json!({"credential": {"user_id": uid}})),
        // Nor an application credential, which would outlive it too.
        (
            Method::POST,
            app_creds.as_str(),
            json!({"application_credential": {"name": "from-temp"}}),
        ),
        (
            Method::PUT,
            one.as_str(),
            json!({"credential": {"status": "inactive"}}),
        ),
        (Method::DELETE, one.as_str(), Value::Null),
    ] {
        let mut r = Signed::new(method.clone(), &iam, path)
            .header("x-domain-id", "default")
            .header("x-security-token", &st);
        if !body.is_null() {
            r = r.json(&body);
        }
        let (s, b) = r.sign(&key, &key.secret, now()).send(c).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {b}");
    }
    let (s, b) = c.get(&admin, &format!("/identity{one}")).await;
    assert_eq!(
        (
            s,
            b["credential"]["status"].as_str(),
            key_count(c, &admin, &uid).await
        ),
        (StatusCode::OK, Some("active"), 1),
        "{b}"
    );
    // A signed request validating "its own" X-Auth-Token: the token is checked like any other
    // (the signature authenticated the caller, not the token).
    let (s, b) = Signed::new(Method::GET, &iam, "/v3/auth/tokens")
        .header("x-domain-id", "default")
        .header("x-auth-token", "not-a-token")
        .header("x-subject-token", "not-a-token")
        .sign(&perm, &perm.secret, now())
        .send(c)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    // Disabling the user stops it, as it stops her tokens.
    disable_user(c, &admin, &uid).await;
    assert_eq!(
        list(Some(&st))
            .sign(&key, &key.secret, now())
            .send(c)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}
on_both_stores!(temporary_keys_act_with_their_security_token);

/// Keys outlive a restart (the credential key is read back from the storage dir), and on
/// PostgreSQL another node sharing the storage dir verifies them and sees their deletion at once.
async fn keys_hold_across_restarts_and_nodes(c: &mut TestCloud) {
    let admin = c.admin_token().await;
    let t = c.demo_member("erin", &["ECS ReadOnlyAccess"], &[]).await;
    let uid = user_id(c, &admin, "erin").await;
    let k = new_key(c, &t, &uid).await;
    fn own_keys<'a>(iam: &'a str, k: &Key) -> Signed<'a> {
        Signed::new(Method::GET, iam, "/v3.0/OS-CREDENTIAL/credentials")
            .header("x-domain-id", "default")
            .sign(k, &k.secret, now())
    }
    c.restart().await;
    let (s, b) = own_keys(&c.huawei_url("iam"), &k).send(c).await;
    assert_eq!(s, StatusCode::OK, "after a restart: {b}");
    let Some(b_node) = c.second_node().await else {
        return;
    };
    let b_iam = b_node
        .huawei
        .iter()
        .find(|(e, _)| e.name() == "iam")
        .map(|(_, u)| u.clone())
        .expect("iam endpoint");
    let (s, b) = own_keys(&b_iam, &k).send(c).await;
    assert_eq!(s, StatusCode::OK, "on the other node: {b}");
    let admin = c.admin_token().await;
    let (s, _) = c.delete(&admin, &format!("{KEYS}/{}", k.access)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        own_keys(&b_iam, &k).send(c).await.0,
        StatusCode::UNAUTHORIZED,
        "deleted on the other node"
    );
    b_node.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_hold_across_restarts_and_nodes_sqlite() {
    if let Some(mut c) = TestCloud::start(Backend::Sqlite).await {
        keys_hold_across_restarts_and_nodes(&mut c).await;
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_hold_across_restarts_and_nodes_postgres() {
    if let Some(mut c) = TestCloud::start(Backend::Postgres).await {
        keys_hold_across_restarts_and_nodes(&mut c).await;
        c.stop().await;
    }
}
