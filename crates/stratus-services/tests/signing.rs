//! The AK/SK verifier against requests signed by Huawei Cloud's own SDK
//! (`data/sdk-signatures.json`, written by `scripts/signature-vectors`): each verifies as sent,
//! and any change to what was signed, or a wrong secret, fails it.

use serde_json::Value;
use std::collections::BTreeMap;
use stratus_services::signing::{self, SignError, WireRequest};

struct Vector {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: String,
}

fn vectors() -> (String, String, i64, Vec<Vector>) {
    let doc: Value =
        serde_json::from_str(include_str!("data/sdk-signatures.json")).expect("vectors parse");
    let s = |v: &Value| v.as_str().expect("a string").to_string();
    let reqs = doc["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| Vector {
            method: s(&r["method"]),
            path: s(&r["path"]),
            query: s(&r["query"]),
            headers: r["headers"]
                .as_object()
                .expect("headers")
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), s(v)))
                .collect(),
            body: s(&r["body"]),
        })
        .collect();
    let now = signing::parse_date(&s(&doc["date"])).expect("the date parses");
    (s(&doc["access"]), s(&doc["secret"]), now, reqs)
}

/// Checks `v` as a server would see it on the wire, with the secret `secret` at time `now`.
fn verify(v: &Vector, secret: &str, now: i64) -> Result<String, SignError> {
    let header = |n: &str| v.headers.get(n).map(String::as_str);
    let hash = signing::sha256_hex(v.body.as_bytes());
    // A body declared unsigned is not read (as the server does with a large one).
    let unsigned = header(signing::CONTENT_SHA256_HEADER) == Some(signing::UNSIGNED_PAYLOAD);
    let checked = signing::check(
        header("authorization").expect("signed"),
        &WireRequest {
            method: &v.method,
            path: &v.path,
            query: &v.query,
            header: &header,
            payload_sha256: if unsigned && !v.body.is_empty() {
                None
            } else {
                Some(&hash)
            },
        },
        now,
    )?;
    checked.verify(secret.as_bytes())?;
    Ok(checked.auth.access)
}

#[test]
fn every_request_the_sdk_signed_verifies() {
    let (access, secret, now, reqs) = vectors();
    assert!(reqs.len() >= 10);
    for v in &reqs {
        assert_eq!(
            verify(v, &secret, now).map_err(|e| format!("{} {}: {e}", v.method, v.path)),
            Ok(access.clone())
        );
    }
}

#[test]
fn a_wrong_secret_or_any_change_fails_the_signature() {
    let (_, secret, now, reqs) = vectors();
    let mut wrong = secret.clone();
    wrong.pop();
    wrong.push('x');
    for v in &reqs {
        assert_eq!(
            verify(v, &wrong, now),
            Err(SignError::Mismatch),
            "{}",
            v.path
        );
        let mut m = clone(v);
        m.path.push('x');
        assert_eq!(
            verify(&m, &secret, now),
            Err(SignError::Mismatch),
            "path {}",
            v.path
        );
        let mut m = clone(v);
        m.query = if m.query.is_empty() {
            "a=1".into()
        } else {
            format!("{}&a=1", m.query)
        };
        assert_eq!(
            verify(&m, &secret, now),
            Err(SignError::Mismatch),
            "query {}",
            v.path
        );
        let mut m = clone(v);
        m.method = if m.method == "GET" {
            "HEAD".into()
        } else {
            "GET".into()
        };
        assert_eq!(
            verify(&m, &secret, now),
            Err(SignError::Mismatch),
            "method {}",
            v.path
        );
        let mut m = clone(v);
        m.headers.insert("host".into(), "127.0.0.1:9999".into());
        assert_eq!(
            verify(&m, &secret, now),
            Err(SignError::Mismatch),
            "host {}",
            v.path
        );
        let unsigned_body = v.headers.contains_key(signing::CONTENT_SHA256_HEADER);
        if !v.body.is_empty() && !unsigned_body {
            let mut m = clone(v);
            m.body.push(' ');
            assert_eq!(
                verify(&m, &secret, now),
                Err(SignError::Mismatch),
                "body {}",
                v.path
            );
        }
        // A header the signature does not name may change.
        let mut m = clone(v);
        m.headers.insert("user-agent".into(), "other".into());
        assert!(
            verify(&m, &secret, now).is_ok(),
            "unsigned header {}",
            v.path
        );
    }
}

#[test]
fn the_signing_time_must_be_within_fifteen_minutes() {
    let (access, secret, now, reqs) = vectors();
    let v = &reqs[0];
    for skew in [-900, 0, 900] {
        assert_eq!(verify(v, &secret, now + skew), Ok(access.clone()));
    }
    for skew in [-901, 901, 86400] {
        assert_eq!(verify(v, &secret, now + skew), Err(SignError::Skew(skew)));
    }
}

#[test]
fn our_signer_agrees_with_the_sdk() {
    let (access, secret, _, reqs) = vectors();
    for v in &reqs {
        let header = |n: &str| v.headers.get(n).map(String::as_str);
        let hash = signing::sha256_hex(v.body.as_bytes());
        let sent = header("authorization").expect("signed");
        let names = signing::parse_authorization(sent)
            .expect("parses")
            .signed_headers;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let ours = signing::sign(
            &access,
            secret.as_bytes(),
            &WireRequest {
                method: &v.method,
                path: &v.path,
                query: &v.query,
                header: &header,
                payload_sha256: Some(&hash),
            },
            &names,
        );
        assert_eq!(ours.as_deref(), Some(sent), "{} {}", v.method, v.path);
    }
}

fn clone(v: &Vector) -> Vector {
    Vector {
        method: v.method.clone(),
        path: v.path.clone(),
        query: v.query.clone(),
        headers: v.headers.clone(),
        body: v.body.clone(),
    }
}
