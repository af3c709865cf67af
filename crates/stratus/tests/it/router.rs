//! Wire rules checked on the router itself: requests handed to it directly (`oneshot`), no
//! socket, against a real store. Each API's error format for what no route serves, request ids,
//! bad JSON, microversion negotiation and the `WWW-Authenticate` of Keystone's 401.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::common::{Backend, TestCloud};

/// Sends one request to the router: status, headers, JSON body (`null` when empty).
async fn send(c: &TestCloud, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let r = c.router().oneshot(req).await.expect("the router answers");
    let (parts, body) = r.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (parts.status, parts.headers, v)
}

fn req(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path)
}

/// The shape of each API's error body: Keystone's `error`, Glance's flat `message`/`code`/`title`,
/// Nova's and Cinder's one fault key.
fn error_shape(api: &str, status: StatusCode, body: &Value) -> Result<(), String> {
    let code = status.as_u16();
    let ok = match api {
        "identity" => body["error"]["code"] == code && body["error"]["message"].is_string(),
        "image" => {
            body["code"]
                .as_str()
                .is_some_and(|c| c.starts_with(&code.to_string()))
                && body["message"].is_string()
        }
        _ => body
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.values().next())
            .is_some_and(|f| f["code"] == code && f["message"].is_string()),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{api} {code}: {body}"))
    }
}

#[tokio::test]
async fn what_no_route_serves_is_answered_in_each_apis_format() {
    let c = TestCloud::start(Backend::Sqlite).await.expect("sqlite");
    let cases = [
        (
            "identity",
            "GET",
            "/identity/v3/no-such-thing",
            StatusCode::NOT_FOUND,
        ),
        (
            "identity",
            "DELETE",
            "/identity/v3",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "image",
            "GET",
            "/image/v2/no-such-thing",
            StatusCode::NOT_FOUND,
        ),
        (
            "image",
            "PUT",
            "/image/v2/images",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "compute",
            "GET",
            "/compute/v2.1/no/such/thing",
            StatusCode::NOT_FOUND,
        ),
        (
            "volume",
            "GET",
            "/volume/v3/no/such/thing",
            StatusCode::NOT_FOUND,
        ),
    ];
    let mut wrong = Vec::new();
    for (api, m, path, want) in cases {
        let (s, h, b) = send(&c, req(m, path).body(Body::empty()).unwrap()).await;
        if s != want {
            wrong.push(format!("{m} {path}: {s}, not {want}"));
            continue;
        }
        if let Err(e) = error_shape(api, s, &b) {
            wrong.push(e);
        }
        let id = h
            .get("x-openstack-request-id")
            .and_then(|v| v.to_str().ok());
        if !id.is_some_and(|i| i.starts_with("req-")) {
            wrong.push(format!("{m} {path}: request id {id:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    c.stop().await;
}

#[tokio::test]
async fn bad_json_and_missing_tokens_are_refused_in_format() {
    let c = TestCloud::start(Backend::Sqlite).await.expect("sqlite");
    // Malformed JSON on the token route: Keystone's 400.
    let (s, _, b) = send(
        &c,
        req("POST", "/identity/v3/auth/tokens")
            .header("content-type", "application/json")
            .body(Body::from("{\"auth\": "))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    error_shape("identity", s, &b).unwrap();
    // No token: 401 everywhere, Keystone's with `WWW-Authenticate`.
    for (api, path) in [
        ("identity", "/identity/v3/projects"),
        ("image", "/image/v2/images"),
        ("compute", "/compute/v2.1/servers"),
        ("volume", "/volume/v3/volumes"),
    ] {
        let (s, h, b) = send(&c, req("GET", path).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {b}");
        error_shape(api, s, &b).unwrap();
        assert_eq!(
            h.contains_key("www-authenticate"),
            api == "identity",
            "{path}"
        );
    }
    // A token that does not decode is the same 401, not a 5xx.
    let (s, _, b) = send(
        &c,
        req("GET", "/compute/v2.1/servers")
            .header("x-auth-token", "gAAAA-not-a-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    c.stop().await;
}

#[tokio::test]
async fn compute_microversions_are_negotiated_on_every_answer() {
    let c = TestCloud::start(Backend::Sqlite).await.expect("sqlite");
    let version = |v: &str| {
        req("GET", "/compute/v2.1/")
            .header("openstack-api-version", format!("compute {v}"))
            .body(Body::empty())
            .unwrap()
    };
    let (s, h, _) = send(&c, version("2.47")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["openstack-api-version"], "compute 2.47");
    assert_eq!(h["x-openstack-nova-api-version"], "2.47");
    let (s, h, _) = send(&c, version("latest")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["openstack-api-version"], "compute 2.47");
    // Out of range: 406 in Nova's format; not a version at all: 400.
    let (s, _, b) = send(&c, version("2.48")).await;
    assert_eq!(s, StatusCode::NOT_ACCEPTABLE, "{b}");
    error_shape("compute", s, &b).unwrap();
    let (s, _, b) = send(&c, version("two")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    error_shape("compute", s, &b).unwrap();
    c.stop().await;
}
