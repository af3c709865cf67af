//! Microversion negotiation and the canonical compute path, in one layer around the router.

use crate::error::{error_response, ApiKind};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

pub const MIN_MINOR: u16 = 1;
/// The highest microversion served (2.47: the flavor embedded in servers).
pub const MAX_MINOR: u16 = 47;

/// The negotiated compute microversion (2.minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Microversion(pub u16);

impl Microversion {
    pub fn at_least(self, minor: u16) -> bool {
        self.0 >= minor
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Microversion {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Microversion>()
            .copied()
            .unwrap_or(Microversion(MIN_MINOR)))
    }
}

/// Top-level collections of the compute API: a path whose first segment after the version is one
/// of these has no project id in it.
const COLLECTIONS: &[&str] = &[
    "servers",
    "flavors",
    "images",
    "limits",
    "extensions",
    "os-availability-zone",
    "os-keypairs",
    "os-quota-sets",
    "os-hypervisors",
    "os-services",
];

/// The requested version: the `compute` item of `OpenStack-API-Version`, else
/// `X-OpenStack-Nova-API-Version`, else 2.1.
fn negotiate(h: &HeaderMap) -> Result<u16, (StatusCode, String)> {
    let new = h
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut it = item.split_whitespace();
            match (it.next(), it.next()) {
                (Some(svc), Some(ver)) if svc.eq_ignore_ascii_case("compute") => {
                    Some(ver.to_string())
                }
                _ => None,
            }
        })
        .next();
    let legacy = h
        .get("x-openstack-nova-api-version")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string());
    let Some(asked) = new.or(legacy) else {
        return Ok(MIN_MINOR);
    };
    if asked.eq_ignore_ascii_case("latest") {
        return Ok(MAX_MINOR);
    }
    let parsed = asked
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .filter(|_| !asked.starts_with('+') && !asked.contains(' '));
    let Some((major, minor)) = parsed else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("Invalid format of client version '{asked}'. Expected format 'X.Y', where X is a major part and Y is a minor part of version."),
        ));
    };
    if major != 2 || !(MIN_MINOR..=MAX_MINOR).contains(&minor) {
        return Err((
            StatusCode::NOT_ACCEPTABLE,
            format!("Version {asked} is not supported by the API. Minimum is 2.{MIN_MINOR} and maximum is 2.{MAX_MINOR}."),
        ));
    }
    Ok(minor)
}

/// `/compute/v2/...` → `/compute/v2.1/...`; a missing project id → `_`.
fn canonical(path: &str) -> Option<String> {
    crate::routes::canonical_path(
        path,
        &["/compute/v2.1/", "/compute/v2/"],
        "/compute/v2.1/",
        COLLECTIONS,
    )
}

fn set_version_headers(resp: &mut Response, minor: u16) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("compute 2.{minor}")) {
        h.insert("openstack-api-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("2.{minor}")) {
        h.insert("x-openstack-nova-api-version", v);
    }
    h.insert(
        axum::http::header::VARY,
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
}

/// Runs around the router (paths are rewritten before routing).
pub async fn compute_layer(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    // ECS's own API has no microversions and no canonical rewriting.
    let ecs = path.starts_with("/compute/v1/") || path.starts_with("/compute/v1.1/");
    if (path != "/compute" && !path.starts_with("/compute/")) || ecs {
        return next.run(req).await;
    }
    let legacy = path == "/compute/v2" || path.starts_with("/compute/v2/");
    let minor = if legacy {
        Ok(MIN_MINOR)
    } else {
        negotiate(req.headers())
    };
    let minor = match minor {
        Ok(m) => m,
        Err((status, msg)) => {
            let mut resp = error_response(ApiKind::Compute, status, &msg);
            set_version_headers(&mut resp, MIN_MINOR);
            return resp;
        }
    };
    if let Some(p) = canonical(&path) {
        crate::routes::set_path(&mut req, &p);
    }
    req.extensions_mut().insert(Microversion(minor));
    let mut resp = next.run(req).await;
    set_version_headers(&mut resp, minor);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
        m
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(&HeaderMap::new()), Ok(1));
        assert_eq!(
            negotiate(&h("openstack-api-version", "compute 2.47")),
            Ok(47)
        );
        assert_eq!(
            negotiate(&h("openstack-api-version", "image 2.5, compute 2.3")),
            Ok(3)
        );
        assert_eq!(
            negotiate(&h("x-openstack-nova-api-version", "2.10")),
            Ok(10)
        );
        assert_eq!(
            negotiate(&h("openstack-api-version", "compute latest")),
            Ok(MAX_MINOR)
        );
        assert_eq!(
            negotiate(&h("openstack-api-version", "compute 2.99"))
                .unwrap_err()
                .0,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(&h("openstack-api-version", "compute 3.1"))
                .unwrap_err()
                .0,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(&h("openstack-api-version", "compute 2.0"))
                .unwrap_err()
                .0,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(&h("openstack-api-version", "compute two"))
                .unwrap_err()
                .0,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(
            canonical("/compute/v2.1/servers").as_deref(),
            Some("/compute/v2.1/_/servers")
        );
        assert_eq!(
            canonical("/compute/v2/p1/servers/x").as_deref(),
            Some("/compute/v2.1/p1/servers/x")
        );
        assert_eq!(canonical("/compute/v2/").as_deref(), Some("/compute/v2.1/"));
        assert_eq!(
            canonical("/compute/v2.1/abc/flavors").as_deref(),
            Some("/compute/v2.1/abc/flavors")
        );
        assert_eq!(canonical("/compute/"), None);
    }
}
